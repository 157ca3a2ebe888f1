"""--compile [max]: the presets, and the compiled training step equal to eager on the CPU (issue 23)."""
from __future__ import annotations

import pytest
import torch
from mapping_passes import accuracy_and_test_counts, gather_statistics, refresh_mapping
from test_micro_batching import make_trainer

from algorithms.runtime import COMPILE_PRESETS, compile_options
from runner.config import build_parser, config_from_args


def test_compile_flag_values_and_their_torch_compile_options():
    parse = lambda *a: config_from_args("ilm_vp", build_parser("ilm_vp").parse_args(list(a))).compile  # noqa: E731
    assert parse() is False and parse("--compile") is True and parse("--compile", "default") is True and parse("--compile", "max") == "max"
    assert compile_options(False) is None and compile_options(True) == {} and compile_options("max") == {"mode": "max-autotune"}
    compile_options("max")["mode"] = "changed"  # a copy: the preset stays
    assert COMPILE_PRESETS["max"] == {"mode": "max-autotune"}


@pytest.mark.slow
def test_a_compiled_epoch_equals_the_eager_one_on_the_cpu(tmp_path, cifar_root):
    """torch.compile's default mode on the tiny network (about a minute to compile here): the mapping
    pass, one training epoch and the test pass give eager's numbers up to float rounding."""
    out = {}
    for name, extra in (("eager", ()), ("compiled", ("--compile",))):
        trainer = make_trainer(tmp_path / name, cifar_root, "--prompt-init", "randn", *extra)
        stats = gather_statistics(trainer, 0)
        refresh_mapping(trainer, 0)
        metrics = trainer.train_epoch(0)
        acc, counts = accuracy_and_test_counts(trainer)
        out[name] = (stats, trainer.model.input_transform.theta.detach().clone(), metrics, acc, counts)
    (stats_e, theta_e, m_e, acc_e, counts_e), (stats_c, theta_c, m_c, acc_c, counts_c) = out["eager"], out["compiled"]
    assert torch.equal(stats_e, stats_c) and torch.equal(counts_e, counts_c) and acc_e == acc_c
    assert (theta_e - theta_c).abs().max() < 1e-4 and theta_e.abs().max() > 1e-2  # trained, and alike
    assert m_c["train_loss"] == pytest.approx(m_e["train_loss"], rel=1e-5) and m_c["train_acc"] == m_e["train_acc"]
