"""``--mapping head``: a prompt trained with a linear head on the frozen network's features.

The key property: with the prompt frozen at zero it is linear probing, step for step (same
batches, same head init, same optimizer), because both make the head with one function and train
it with one recipe. Also: its own optimizer, exact resume, its flags, and a CLIP script.
"""
from __future__ import annotations

import json
import math

import pytest
import torch
from clip_helpers import private_cache, run_dir_of, tiny_clip_args  # noqa: F401  (private_cache: a fixture)
from conftest import same_training, straight_and_resumed, tiny_args

from algorithms.engine import Trainer, build_optimizations
from algorithms.mappings import HeadMapping, HeadOptions, build_mapping
from algorithms.mappings.head import LINEAR_PROBING_RECIPE, NormalisedImageFeatures
from algorithms.methods import FAMILIES, get_method
from algorithms.runtime import Runtime
from algorithms.settings import RunConfig
from common.options import options_from
from data.registry import SubsetSpec, load_dataset
from runner.cli import main
from runner.config import build_parser, config_from_args
from runner.run_dir import RunDir

CPU = torch.device("cpu")


def trainer_for(method: str, tmp_path, cifar_root, *extra: str) -> Trainer:
    config = config_from_args(method, build_parser(method).parse_args(tiny_args(tmp_path, cifar_root, *extra)))
    data = load_dataset("cifar10", cifar_root, batch_size=config.batch_size, subset=SubsetSpec())
    runtime = Runtime(CPU, "fp32")
    experiment = FAMILIES[get_method(method).family].build(config, data, runtime)
    if config.mapping == "head":  # the prompt frozen at zero
        for p in experiment.model.input_transform.parameters():
            p.requires_grad_(False)
    return Trainer(config, experiment, data, runtime, RunDir(tmp_path / method, enabled=False))


@pytest.mark.parametrize("method, flags", [
    ("ilm_vp", ("--mapping", "head", "--prompt", "watermark", "--augment", "none")),
    ("head_vp", ()),  # the registered method: its defaults are these flags
])
def test_prompt_frozen_at_zero_plus_head_is_linear_probing_step_for_step(tmp_path, cifar_root, method, flags):
    """The watermark prompt at zero passes the resized, normalised image, as linear probing's input
    does; then the losses of every epoch and the head's weights after each are linear probing's."""
    epochs = ("--epochs", "4", "--batch-size", "16", "--seed", "3")
    head = trainer_for(method, tmp_path, cifar_root, *epochs, *flags)
    head_opt = head.optimizations[1]
    rate = options_from(HeadOptions, get_method(method).defaults).head_lr  # the method's head rate (linear probing's 0.1 unless it sets one)
    assert head_opt.optimizer.param_groups[0]["lr"] == rate
    lp = trainer_for("linear_probing", tmp_path, cifar_root, *epochs, "--no-cache-features", "--lr", repr(rate))
    lp_layer, head_layer = lp.model.network.fc, head.model.label_mapping.linear
    assert torch.equal(lp_layer.weight, head_layer.weight) and torch.equal(lp_layer.bias, head_layer.bias)  # one init
    # the head's optimizer is linear probing's: Adam, its multistep schedule
    assert type(head_opt.optimizer) is type(lp.optimizer) and lp.optimizer.param_groups[0]["lr"] == rate
    for epoch in range(4):
        a, b = lp.train_epoch(epoch), head.train_epoch(epoch)
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5, abs=1e-6) and b["train_acc"] == a["train_acc"]
        torch.testing.assert_close(head_layer.weight, lp_layer.weight, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(head_layer.bias, lp_layer.bias, rtol=1e-4, atol=1e-5)
        assert head_opt.optimizer.param_groups[0]["lr"] == pytest.approx(lp.optimizer.param_groups[0]["lr"])
    assert lp.optimizer.param_groups[0]["lr"] == pytest.approx(rate * 0.1**2)  # the schedule did decay (both milestones at epoch int(0.5 * 4) = int(0.72 * 4) = 2)
    assert torch.count_nonzero(head.model.input_transform.delta) == 0  # the prompt stayed at zero
    assert head.evaluate(head.test_loader)["acc"] == pytest.approx(lp.evaluate(lp.test_loader)["acc"])


def test_the_head_reads_the_features_of_the_networks_final_layer(tmp_path, cifar_root):
    """The network in front of the head ends where its classifier began: the head's input is what
    the original final layer read (the tiny network's pooled 16 features)."""
    trainer = trainer_for("ilm_vp", tmp_path, cifar_root, "--mapping", "head")
    model = trainer.model
    assert isinstance(model.label_mapping, HeadMapping) and model.label_mapping.num_source == 16
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        target, features = model(x, return_source=True)
    assert features.shape == (2, 16) and target.shape == (2, 10)
    torch.testing.assert_close(target, model.label_mapping.linear(features))


def test_the_head_learns_in_its_own_optimizer_with_linear_probings_recipe():
    """A group with a recipe gets an optimizer of its own: here SGD + cosine for the prompt, the head's Adam + multistep."""
    config = RunConfig(method="x", epochs=10, lr=40.0, optimizer="sgd", scheduler="cosine", momentum=0.9)
    prompt, head = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
    built = build_optimizations(config, [{"params": [prompt]}, {"params": [head], "recipe": HeadOptions().recipe()}], steps_per_epoch=10)
    assert [type(o.optimizer).__name__ for o in built] == ["SGD", "Adam"]
    assert built[0].optimizer.param_groups[0]["params"] == [prompt] and built[1].optimizer.param_groups[0]["params"] == [head]
    assert built[1].settings.lr == LINEAR_PROBING_RECIPE["lr"] and built[1].settings.scheduler == "multistep"
    for _ in range(60):  # six epochs: cosine decays the prompt's rate; the head's drops 10x at epoch int(0.5 * 10) = 5
        for o in built:
            o.optimizer.step()
            o.scheduler.step()
    assert built[0].optimizer.param_groups[0]["lr"] == pytest.approx(40.0 * 0.5 * (1 + math.cos(math.pi * 0.6)))
    assert built[1].optimizer.param_groups[0]["lr"] == pytest.approx(0.01)
    options = options_from(HeadOptions, {"head_lr": 0.5, "head_optimizer": "sgd", "mapping_lr": 3.0})
    assert options.recipe() == {**LINEAR_PROBING_RECIPE, "lr": 0.5, "optimizer": "sgd"}


def test_a_head_run_resumes_exactly_with_both_optimizers(tmp_path, cifar_root, monkeypatch):
    def args(folder):
        return tiny_args(folder, cifar_root, "--mapping", "head", "--prompt", "watermark", "--epochs", "3", "--head-lr", "0.05")

    straight, resumed = straight_and_resumed("ilm_vp", args, tmp_path, monkeypatch)
    assert same_training(straight, resumed)
    assert "label_mapping.linear.weight" in straight["model"] and len(straight["more_optimizers"]) == 1
    for a, b in zip([straight["optimizer"], *[m["optimizer"] for m in straight["more_optimizers"]]],
                    [resumed["optimizer"], *[m["optimizer"] for m in resumed["more_optimizers"]]]):  # fmt: skip
        assert a["param_groups"] == b["param_groups"]
        assert all(torch.equal(a["state"][i][k], b["state"][i][k]) for i in a["state"] for k in a["state"][i])
    config = json.loads(next((tmp_path / "straight").rglob("config.json")).read_text())
    extra = config["config"]["extra"] if "config" in config else config["extra"]
    assert (extra["head_lr"], extra["head_optimizer"], extra["head_weight_decay"]) == (0.05, "adam", 0.0)  # in the run's identity


def test_head_flags_need_the_head_and_are_in_help(tmp_path, cifar_root, capsys):
    assert main("ilm_vp", tiny_args(tmp_path, cifar_root, "--head-lr", "0.1")) == 2
    assert "--head-lr applies to --mapping head" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main("ilm_vp", ["--help"])
    text = capsys.readouterr().out
    assert "--head-lr" in text and "--head-optimizer" in text and "head " in text


def test_head_mapping_builds_from_the_registry():
    mapping = build_mapping("head", 16, 4, seed=2)
    again = build_mapping("head", 16, 4, seed=2)
    assert isinstance(mapping, HeadMapping) and torch.equal(mapping.linear.weight, again.linear.weight)
    assert mapping.describe(["a"], ["b"]) == {}  # no per-epoch mapping file


def test_clip_prompt_with_a_head_runs_on_the_normalised_image_embedding(tmp_path, cifar_root):
    """Through a CLIP method script on the tiny CLIP: the head sits on the 32-d L2-normalised embedding."""
    assert main("single_tp_vp", tiny_clip_args(tmp_path / "res", cifar_root, "--mapping", "head", "--no-zero-shot")) == 0
    run = run_dir_of(tmp_path / "res", "single_tp_vp")
    results = json.loads((run / "results.json").read_text())
    assert {"final_test_top5", "final_test_loss", "final_train_top5"} <= results.keys()
    state = torch.load(run / "ckpt.pth", weights_only=False)
    assert state["model"]["label_mapping.linear.weight"].shape == (10, 32) and len(state["more_optimizers"]) == 1
    assert not (run / "mappings").exists()
    encoder = torch.nn.Linear(4, 3)
    x = torch.randn(5, 4)
    out = NormalisedImageFeatures(encoder)(x)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(out, encoder(x) / encoder(x).norm(dim=1, keepdim=True))
