"""algorithms/engine.py: mapping statistics from the training pass, a bf16 run against fp32, and
mapping counts under autocast against fp32 on near-tied logits."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import tiny_args
from mapping_passes import accuracy_and_test_counts, gather_statistics, mapping_refit, refresh_mapping
from torch import nn

from algorithms.engine import Experiment, Trainer
from algorithms.mappings import build_mapping
from algorithms.methods import FAMILIES
from algorithms.runtime import Runtime
from algorithms.settings import RunConfig
from data.loader import to_float01
from data.registry import SubsetSpec, TargetData, load_dataset
from data.tensors import ImageTensorSet
from models.networks import float32_output_layer
from models.reprogrammer import ReprogrammingModel
from runner.cli import main
from runner.config import build_parser, config_from_args
from runner.devices import cpu_supports_bf16, resolve_precision
from runner.run_dir import RunDir

CPU = torch.device("cpu")


def make_trainer(tmp_path, cifar_root, *extra: str, **overrides) -> Trainer:
    args = build_parser("ilm_vp").parse_args(tiny_args(tmp_path, cifar_root, *extra))
    config = replace(config_from_args("ilm_vp", args), **overrides)
    data = load_dataset("cifar10", cifar_root, batch_size=config.batch_size, subset=SubsetSpec())
    runtime = Runtime(CPU, resolve_precision(config.precision, CPU))
    experiment = FAMILIES["visual_prompt"].build(config, data, runtime)
    return Trainer(config, experiment, data, runtime, RunDir(tmp_path / "run", enabled=False))


@pytest.mark.slow
def test_lm_source_train_counts_equal_a_pass_when_the_prompt_does_not_move(tmp_path, cifar_root):
    # a learning rate of 0 (refused on the command line) keeps the prompt where it starts
    trainer = make_trainer(tmp_path, cifar_root, "--lm-source", "train", "--prompt-init", "randn", lr=0.0)
    refresh_mapping(trainer, 0)
    trainer.train_epoch(0)
    collected = mapping_refit(trainer).pending
    assert collected is not None and int(collected.sum()) == 50
    torch.testing.assert_close(collected, gather_statistics(trainer, 1), rtol=0, atol=0)


def test_lm_source_train_skips_the_pass_and_uses_the_collected_counts(tmp_path, cifar_root, monkeypatch):
    trainer = make_trainer(tmp_path, cifar_root, "--lm-source", "train")
    refresh_mapping(trainer, 0)
    trainer.train_epoch(0)
    monkeypatch.setattr(mapping_refit(trainer), "gather_statistics", lambda ctx, epoch: pytest.fail("the pass ran"))
    refresh_mapping(trainer, 1)
    assert mapping_refit(trainer).pending is None


@pytest.mark.slow
@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no bf16")
def test_bf16_run_trains_close_to_fp32(tmp_path, cifar_root):
    import json

    for precision in ("fp32", "bf16"):
        assert main("ilm_vp", tiny_args(tmp_path / precision, cifar_root, "--precision", precision, "--epochs", "1")) == 0
    runs = {p: next((tmp_path / p).rglob("metrics.jsonl")).parent for p in ("fp32", "bf16")}
    rows = {p: json.loads((runs[p] / "metrics.jsonl").read_text()) for p in runs}
    assert json.loads((runs["bf16"] / "config.json").read_text())["resolved"]["precision"] == "bf16"
    assert abs(rows["bf16"]["train_loss"] - rows["fp32"]["train_loss"]) < 0.05


@pytest.mark.slow
def test_a_milestone_on_epoch_zero_is_warned_about(tmp_path, cifar_root, capsys):
    from algorithms.engine import lr_factor, schedule_warnings
    from algorithms.settings import RunConfig

    one = RunConfig(method="ilm_vp", epochs=1)  # the paper's milestones 0.5 and 0.72 both give int(.) = 0
    (warning,) = schedule_warnings(one)
    assert "milestones 0.5 0.72 fall on epoch 0" in warning and "lr 0.0001" in warning and "--scheduler constant" in warning
    assert lr_factor(one, steps_per_epoch=4)(0) == pytest.approx(0.01)  # what the warning says: 0.01 x 0.1^2 from step 0
    assert schedule_warnings(RunConfig(method="ilm_vp", epochs=3)) == []  # int(1.5) = 1, int(2.16) = 2
    assert schedule_warnings(RunConfig(method="ilm_vp", epochs=1, scheduler="constant")) == []
    assert "milestone 0.5 falls" in schedule_warnings(RunConfig(method="ilm_vp", epochs=1, milestones=[0.5, 1.0]))[0]
    assert main("ilm_vp", tiny_args(tmp_path, cifar_root, "--epochs", "1")) == 0
    assert capsys.readouterr().err.count("warning: with --epochs 1 the learning-rate milestones") == 1


# ---------------------------------------------------------------------------------------------
# Precision: mapping counts and predictions under autocast equal float32 ones on near-ties


def near_tie_network(float32_logits: bool) -> nn.Module:
    """Logits ``50 * mean(x) + 0.05 * x @ r_s`` (about 25, apart by ~0.01): below bf16's step of
    0.125 there, so bf16 logits tie; the body (a flatten) is exact at any precision."""
    generator = torch.Generator().manual_seed(0)
    dim, sources = 12, 6
    head = nn.Linear(dim, sources, bias=False)
    spread = torch.randn(sources, dim, generator=generator) / dim**0.5
    with torch.no_grad():  # zero-mean rows: which source wins depends on the image, not on its brightness
        head.weight.copy_(50.0 / dim + 0.05 * (spread - spread.mean(1, keepdim=True)))
    network = nn.Sequential(nn.Flatten(), head)
    if float32_logits:
        float32_output_layer(network)  # what load_network does to every network
    return network


def near_tie_trainer(
    tmp_path, precision: str, float32_logits: bool = True, mapping: str = "ilm", eval_precision: str | None = None
) -> Trainer:
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (240, 3, 2, 2), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 3, (240,), generator=generator)
    data = TargetData("near-ties", ImageTensorSet(images, labels), ImageTensorSet(images[:60], labels[:60]), ["a", "b", "c"], (2, 2), 32)
    model = ReprogrammingModel(nn.Identity(), near_tie_network(float32_logits), build_mapping(mapping, 6, 3), channels_last=False)
    config = RunConfig(method="ilm_vp", epochs=1, mapping=mapping, device="cpu")
    experiment = Experiment(model=model, source_names=[f"s{i}" for i in range(6)])
    runtime = Runtime(CPU, precision, eval_precision=eval_precision)
    return Trainer(config, experiment, data, runtime, RunDir(tmp_path / precision, enabled=False))


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no bf16")
@pytest.mark.parametrize("mapping", ["ilm", "blm"])
@pytest.mark.parametrize("eval_precision", ["fp32", None])
def test_mapping_counts_and_predictions_under_autocast_equal_fp32_on_near_ties(tmp_path, mapping, eval_precision):
    """Training under autocast (bf16 on the CPU, the code path of CUDA's fp16), with the mapping
    pass and evaluation in fp32 (the default) or at the training precision (``--eval-precision
    train``: the network under autocast, its logits and the mapping in float32): the mapping's
    statistics, its fit, the test predictions and the source-count heatmap equal float32's exactly."""
    runs = {
        "fp32": near_tie_trainer(tmp_path, "fp32", mapping=mapping),
        "bf16": near_tie_trainer(tmp_path, "bf16", mapping=mapping, eval_precision=eval_precision),
    }
    stats = {p: gather_statistics(t, 0) for p, t in runs.items()}
    assert torch.equal(stats["bf16"], stats["fp32"])
    assert int((stats["fp32"].sum(1) > 0).sum()) >= 4  # the votes spread over the near-tied sources
    for trainer in runs.values():
        trainer.model.label_mapping.fit(stats["fp32"])
    passes = {p: accuracy_and_test_counts(t) for p, t in runs.items()}
    acc, heat = {p: a for p, (a, _) in passes.items()}, {p: c for p, (_, c) in passes.items()}
    assert acc["bf16"] == acc["fp32"] and torch.equal(heat["bf16"], heat["fp32"])
    x = to_float01(runs["fp32"].data.test.images)
    with torch.no_grad(), runs["bf16"].runtime.autocast():
        mixed = runs["bf16"].model(x)
    assert mixed.dtype == torch.float32 and torch.equal(mixed, runs["fp32"].model(x).detach())


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no bf16")
def test_the_near_tie_case_does_tie_with_reduced_precision_logits(tmp_path):
    """The case above is a real test: with the output layer left to autocast, bf16 logits tie
    and the counts pile onto the lowest source index."""
    rounded = gather_statistics(near_tie_trainer(tmp_path, "bf16", float32_logits=False), 0)
    exact = gather_statistics(near_tie_trainer(tmp_path / "exact", "fp32"), 0)
    assert not torch.equal(rounded, exact)
    assert rounded[0].sum() > exact[0].sum()


def test_eval_precision_fp32_turns_autocast_off_for_evaluation_only():
    runtime = Runtime(CPU, "bf16", eval_precision="fp32")
    with runtime.autocast():
        assert torch.is_autocast_enabled("cpu")
    with runtime.eval_autocast():
        assert not torch.is_autocast_enabled("cpu")
    with Runtime(CPU, "bf16").eval_autocast():
        assert torch.is_autocast_enabled("cpu")


# ---------------------------------------------------------------------------------------------
# Every CNN prompt trains with every label mapping


def _mappings_for_ten_classes() -> list[str]:
    from algorithms.mappings.base import MAPPINGS

    return [name for name in MAPPINGS if name != "identity"]  # identity needs a 10-way head


@pytest.mark.slow
@pytest.mark.parametrize("prompt", ["pad", "watermark", "smm", "lowrank"])
def test_every_prompt_trains_with_every_mapping(prompt, tmp_path, cifar_root):
    """One epoch per mapping: the run finishes, its zero-initialised pattern has moved, and
    results.json counts the prompt's parameters."""
    import json

    for mapping in _mappings_for_ten_classes():
        results = tmp_path / mapping
        assert main("ilm_vp", tiny_args(results, cifar_root, "--prompt", prompt, "--mapping", mapping, "--epochs", "1")) == 0, mapping
        (run,) = {p.parent for p in results.rglob("results.json")}
        out = json.loads((run / "results.json").read_text())
        assert out["prompt_params"] > 0 and 0.0 <= out["best_test_acc"] <= 100.0, mapping
        state = torch.load(run / "ckpt.pth", map_location="cpu", weights_only=False)["model"]
        pattern = {"pad": "theta", "watermark": "delta", "smm": "delta", "lowrank": "left"}[prompt]
        (key,) = [k for k in state if k.endswith(pattern)]
        assert state[key].abs().sum() > 0, (mapping, key)  # started at zero, trained
