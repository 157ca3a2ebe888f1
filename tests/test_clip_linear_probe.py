"""algorithms/methods/clip_linear_probe.py: logistic regression, the choice of C, the method end to end."""
from __future__ import annotations

import json

import pytest
import torch
from clip_helpers import private_cache, register_tiny_clip, run_dir_of  # noqa: F401  (private_cache: a fixture)

from algorithms.methods.clip_linear_probe import fit_logistic_regression, regularised_loss, select_c
from runner.cli import main

pytestmark = pytest.mark.usefixtures("private_cache")  # every test caches in its own folder



def test_logistic_regression_reaches_the_optimum():
    torch.manual_seed(0)
    x = torch.randn(60, 5, dtype=torch.float64)
    y = (x[:, 0] + 0.5 * torch.randn(60, dtype=torch.float64) > 0).long() + (x[:, 1] > 1).long()
    weight, bias = fit_logistic_regression(x, y, 3, c=0.5, max_iter=500)
    w, b = weight.clone().requires_grad_(True), bias.clone().requires_grad_(True)
    regularised_loss(w, b, x, y, 0.5).backward()
    assert w.grad.abs().max() < 1e-6 and b.grad.abs().max() < 1e-6  # first-order optimality
    # stronger regularisation shrinks the weights
    small, _ = fit_logistic_regression(x, y, 3, c=1e-3, max_iter=500)
    assert small.norm() < 0.1 * weight.norm()


def test_c_is_chosen_on_validation_with_ties_to_the_smallest():
    torch.manual_seed(0)
    x = torch.randn(40, 2)
    y = (x[:, 0] > 0).long()
    best, scores = select_c((x, y), (x, y), 2, [100.0, 1.0, 0.01], max_iter=50)
    assert list(scores) == ["0.01", "1", "100"] and scores["100"] == 100.0
    assert best == min(float(c) for c, s in scores.items() if s == max(scores.values()))


@pytest.mark.slow
def test_linear_probe_end_to_end(tmp_path, cifar_root):
    results = tmp_path / "res"
    args = ["--network", register_tiny_clip(), "--clip-pretrained", "none", "--dataset", "cifar10", "--data-path", str(cifar_root),
            "--results-path", str(results), "--device", "cpu", "--c-values", "0.1", "10", "--max-iter", "30"]  # fmt: skip
    assert main("clip_linear_probe", args) == 0
    run = run_dir_of(results, "clip_linear_probe")
    out = json.loads((run / "results.json").read_text())
    sizes = out["data_sizes"]
    assert sizes["train"] + sizes["val"] == 50 and 5 <= sizes["val"] <= 15 and sizes["test"] == 20
    assert out["best_c"] in (0.1, 10.0) and set(out["val_acc_by_c"]) == {"0.1", "10"}
    probe = torch.load(run / "probe.pth", weights_only=False)
    assert probe["weight"].shape == (10, 32) and out["trainable_params"] == 330
    assert main("clip_linear_probe", args) == 2  # the run folder is not overwritten without --overwrite
