"""BLM, BLM+ and the trainable linear mapping: matrices on hand-computed counts, gradients, training."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_SOURCE_CLASSES, tiny_args
from test_cli import run_dir_of

from algorithms.mappings import MAPPINGS, accumulate_statistic, build_mapping
from algorithms.mappings.probabilistic import BayesianMapping, LinearMapping, blm_matrix, blmplus_top_k, top_k_probabilities
from runner.cli import main

# counts[s, t] for S = 3 source classes, K = 2 targets; source 1 is never predicted
COUNTS = torch.tensor([[3.0, 1.0], [0.0, 0.0], [1.0, 2.0]])


def hand_omega_lambda1() -> torch.Tensor:
    # P(t|s) = N[s,t] / (row sum + 1): rows 4+1, 0+1, 3+1
    p = torch.tensor([[3 / 5, 1 / 5], [0.0, 0.0], [1 / 4, 2 / 4]])
    return p / torch.tensor([[3 / 5 + 1 / 4, 1 / 5 + 2 / 4]])


def test_registry_has_the_new_mappings_beside_the_old():
    for name in ("ilm", "flm", "rlm", "hungarian", "blm", "blmplus", "linear"):
        assert name in MAPPINGS


def test_blm_matrix_matches_hand_computation():
    omega = blm_matrix(COUNTS)
    assert torch.allclose(omega, hand_omega_lambda1(), atol=1e-6)
    assert torch.allclose(omega.sum(dim=0), torch.ones(2), atol=1e-6)  # columns normalised over sources
    assert torch.equal(omega[1], torch.zeros(2))  # never-predicted source contributes nothing


def test_smoothing_changes_the_matrix_and_zero_smoothing_stays_defined():
    unsmoothed = blm_matrix(COUNTS, smoothing=0.0)
    p = torch.tensor([[3 / 4, 1 / 4], [0.0, 0.0], [1 / 3, 2 / 3]])
    assert torch.allclose(unsmoothed, p / p.sum(dim=0, keepdim=True), atol=1e-6)
    assert torch.isfinite(unsmoothed).all()
    assert not torch.allclose(unsmoothed, blm_matrix(COUNTS), atol=1e-3)


def test_target_without_samples_gets_a_uniform_column():
    omega = blm_matrix(torch.tensor([[2.0, 0.0], [1.0, 0.0]]))
    assert torch.allclose(omega[:, 1], torch.full((2,), 0.5))
    assert torch.allclose(omega[:, 0], torch.tensor([(2 / 3) / (2 / 3 + 1 / 2), (1 / 2) / (2 / 3 + 1 / 2)]))


@pytest.mark.slow
def test_blm_fit_from_the_engine_statistics_path():
    """One-hot top-1 votes summed per target class reproduce COUNTS, and fit gives the hand matrix."""
    mapping = build_mapping("blm", 3, 2)
    assert isinstance(mapping, BayesianMapping) and mapping.refresh_due(0) and mapping.refresh_due(5)
    top1 = [0, 0, 0, 2, 0, 2, 2]
    target = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    logits = F.one_hot(torch.tensor(top1), 3).float() * 5.0
    stats = torch.zeros(3, 2)
    accumulate_statistic(stats, mapping.source_statistic(logits), target)
    assert torch.equal(stats, COUNTS)
    mapping.fit(stats)
    assert torch.allclose(mapping.omega, hand_omega_lambda1(), atol=1e-6)
    source = torch.tensor([[1.0, 2.0, 3.0]])
    assert torch.allclose(mapping(source), source @ hand_omega_lambda1(), atol=1e-6)


def test_blmplus_top_k_size():
    assert [blmplus_top_k(k) for k in (2, 6, 7, 10, 20, 100)] == [1, 1, 1, 1, 3, 15]
    assert build_mapping("blmplus", TINY_SOURCE_CLASSES, 20).top_k == 3
    assert build_mapping("blm", TINY_SOURCE_CLASSES, 20).top_k is None


def test_top_k_probabilities_keep_only_the_largest_with_lowest_index_ties():
    logits = torch.tensor([[0.0, 2.0, 1.0, 2.0], [1.0, 1.0, 1.0, 0.0]])
    kept = top_k_probabilities(logits, 2)
    probs = torch.softmax(logits, dim=1)
    expected = torch.zeros(2, 4)
    expected[0, [1, 3]] = probs[0, [1, 3]]
    expected[1, [0, 1]] = probs[1, [0, 1]]  # three-way tie: the two lowest indices
    assert torch.allclose(kept, expected)


@pytest.mark.slow
def test_blmplus_fit_on_hand_computed_probabilities():
    mapping = BayesianMapping(3, 2, top_k=2)
    logits = torch.tensor([[math.log(6.0), math.log(3.0), 0.0], [0.0, 0.0, math.log(2.0)]])  # softmax [.6,.3,.1], [.25,.25,.5]
    target = torch.tensor([0, 1])
    stats = torch.zeros(3, 2)
    accumulate_statistic(stats, mapping.source_statistic(logits), target)
    assert torch.allclose(stats, torch.tensor([[0.6, 0.25], [0.3, 0.0], [0.0, 0.5]]), atol=1e-6)
    mapping.fit(stats)
    p = torch.tensor([[0.6 / 1.85, 0.25 / 1.85], [0.3 / 1.3, 0.0], [0.0, 0.5 / 1.5]])
    assert torch.allclose(mapping.omega, p / p.sum(dim=0, keepdim=True), atol=1e-6)


@pytest.mark.slow
def test_no_gradient_reaches_omega_but_the_input_gets_one():
    mapping = build_mapping("blm", 3, 2)
    mapping.fit(COUNTS)
    assert list(mapping.parameters()) == [] and not mapping.omega.requires_grad
    source = torch.randn(4, 3, requires_grad=True)
    F.cross_entropy(mapping(source), torch.tensor([0, 1, 0, 1])).backward()
    assert mapping.omega.grad is None
    assert source.grad is not None and source.grad.abs().sum() > 0


@pytest.mark.slow
def test_describe_and_changes_since():
    mapping = build_mapping("blm", 3, 2)
    mapping.fit(COUNTS)
    before = {k: v.clone() for k, v in mapping.state_dict().items()}
    view = mapping.describe(["a", "b", "c"], ["x", "y"])
    assert [e["source"] for e in view["x"]] == ["a", "c", "b"]  # by weight; never-predicted b last
    assert view["y"][0] == {"source": "c", "index": 2, "weight": round(float(hand_omega_lambda1()[2, 1]), 6)}
    json.dumps(view)
    assert mapping.changes_since(before) == 0
    mapping.fit(torch.tensor([[0.0, 5.0], [0.0, 0.0], [4.0, 0.0]]))  # both targets switch source
    assert mapping.changes_since(before) == 2
    assert mapping.changes_since(None) is None


def test_linear_mapping_trains_on_a_toy_problem():
    torch.manual_seed(0)
    source = torch.randn(256, 8)
    target = (source @ torch.randn(8, 3)).argmax(dim=1)  # linearly separable
    mapping = build_mapping("linear", 8, 3, seed=1)
    assert isinstance(mapping, LinearMapping) and not mapping.refresh_due(0)
    start = mapping.linear.weight.detach().clone()
    optimizer = torch.optim.Adam(mapping.parameters(), lr=0.05)
    losses = []
    for _ in range(100):
        loss = F.cross_entropy(mapping(source), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert not torch.allclose(mapping.linear.weight, start)
    assert losses[-1] < 0.5 * losses[0]
    assert (mapping(source).argmax(dim=1) == target).float().mean() > 0.9


def test_linear_mapping_initialisation_depends_on_seed_only():
    a, b, c = build_mapping("linear", 8, 3, seed=1), build_mapping("linear", 8, 3, seed=1), build_mapping("linear", 8, 3, seed=2)
    assert torch.equal(a.linear.weight, b.linear.weight) and not torch.equal(a.linear.weight, c.linear.weight)


# -- end to end on the tiny network ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("method,top_k", [("blm_vp", None), ("blmplus_vp", 1)])
def test_blm_scripts_run_end_to_end(method, top_k, tmp_path, cifar_root):
    assert main(method, tiny_args(tmp_path / "res", cifar_root)) == 0
    run = run_dir_of(tmp_path / "res")
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["mapping"] == method.removesuffix("_vp")
    view = json.loads((run / "mappings" / "epoch_002.json").read_text())
    assert len(view) == 10 and all(len(entries) == 5 for entries in view.values())
    for entries in view.values():
        weights = [e["weight"] for e in entries]
        assert weights == sorted(weights, reverse=True) and all(e["source"].startswith("source class") for e in entries)
    ckpt = torch.load(run / "ckpt.pth", map_location="cpu", weights_only=False)
    omega = ckpt["model"]["label_mapping.omega"]
    assert omega.shape == (TINY_SOURCE_CLASSES, 10) and torch.allclose(omega.sum(dim=0), torch.ones(10), atol=1e-5)
    results = json.loads((run / "results.json").read_text())
    assert results["trainable_params"] == 3 * 64 * 64  # omega is not trained


@pytest.mark.slow
def test_linear_mapping_end_to_end_trains_with_its_own_learning_rate(tmp_path, cifar_root):
    args = tiny_args(tmp_path / "res", cifar_root, "--mapping", "linear", "--mapping-lr", "0.003", "--scheduler", "constant")
    assert main("ilm_vp", args) == 0
    run = run_dir_of(tmp_path / "res")
    ckpt = torch.load(run / "ckpt.pth", map_location="cpu", weights_only=False)
    assert [g["lr"] for g in ckpt["optimizer"]["param_groups"]] == [0.01, 0.003]
    initial = build_mapping("linear", TINY_SOURCE_CLASSES, 10, seed=7).linear.weight  # 7: the default --seed
    assert not torch.allclose(ckpt["model"]["label_mapping.linear.weight"], initial)
    results = json.loads((run / "results.json").read_text())
    assert results["trainable_params"] == 3 * 64 * 64 + TINY_SOURCE_CLASSES * 10 + 10


def test_bad_mapping_lr_is_a_one_line_error(tmp_path, cifar_root, capsys):
    assert main("ilm_vp", tiny_args(tmp_path / "res", cifar_root, "--mapping", "linear", "--mapping-lr", "0")) == 2
    assert capsys.readouterr().err.strip() == "error: argument --mapping-lr: must be > 0, got 0 (see --help)"


def test_the_linear_mapping_is_nn_linears_default_init_from_the_seed_alone():
    from algorithms.mappings.probabilistic import LinearMapping

    torch.manual_seed(3)
    reference = LinearMapping(30, 7)  # nn.Linear's own init from a global state seeded with --seed
    torch.manual_seed(99)
    torch.randn(1000)  # whatever ran before (a network's construction) does not matter
    before = torch.random.get_rng_state()
    built = build_mapping("linear", 30, 7, interval=1, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)  # and the global state is left alone
    assert torch.equal(built.linear.weight, reference.linear.weight) and torch.equal(built.linear.bias, reference.linear.bias)
    assert not torch.equal(build_mapping("linear", 30, 7, interval=1, seed=4).linear.weight, reference.linear.weight)
