"""runner/devices.py: precision resolution and the CPU allocator setting."""
from __future__ import annotations

import pytest
import torch

from common.errors import UserError
from runner.devices import resolve_precision, tune_cpu_allocator

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


