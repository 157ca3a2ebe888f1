"""runner/devices.py: precision resolution and the CPU allocator setting."""
from __future__ import annotations

import pytest
import torch

from common.errors import UserError
from runner.devices import resolve_eval_precision, resolve_precision, tune_cpu_allocator

CPU = torch.device("cpu")


def test_tune_cpu_allocator_is_idempotent():
    first = tune_cpu_allocator()
    assert tune_cpu_allocator() == first
    buffer = torch.ones(64, 1024, 1024)  # large allocations still work afterwards
    assert float(buffer.sum()) == 64 * 1024 * 1024


def test_precision_resolution():
    assert resolve_precision("fp32", CPU) == "fp32"
    assert resolve_precision("auto", CPU) in ("fp32", "bf16")
    with pytest.raises(UserError):
        resolve_precision("fp16", CPU)
    with pytest.raises(UserError):
        resolve_precision("fp64", CPU)




def test_auto_precision_on_cuda_is_the_familys_reference_choice(monkeypatch):
    """Prompt methods train in fp16 with loss scaling on CUDA (the ILM-VP code's autocast +
    GradScaler); the others in bf16 where the GPU has it."""
    from algorithms.methods import FAMILIES

    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert FAMILIES["visual_prompt"].cuda_precision == FAMILIES["clip_visual_prompt"].cuda_precision == "fp16"
    assert FAMILIES["linear_probe"].cuda_precision == FAMILIES["full_finetune"].cuda_precision == "bf16"
    assert resolve_precision("auto", cuda, FAMILIES["visual_prompt"].cuda_precision) == "fp16"
    assert resolve_precision("auto", cuda, FAMILIES["linear_probe"].cuda_precision) == "bf16"
    assert resolve_precision("auto", CPU, "fp16") == "fp32"  # CPUs stay in fp32 whatever the family
    assert resolve_precision("bf16", cuda, "fp16") == "bf16"  # an explicit choice wins
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", cuda, "bf16") == "fp16"


def test_eval_precision_resolution():
    assert resolve_eval_precision("train", "fp16") is None  # evaluate as training runs
    assert resolve_eval_precision("fp32", "fp16") == "fp32"  # the default: no autocast, as the reference
    assert resolve_eval_precision("fp32", "fp32") is None
    with pytest.raises(UserError, match="eval precision"):
        resolve_eval_precision("fp16", "fp32")
