"""--recompute: the frozen network's stages recompute their activations in backward; outputs and gradients stay."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import TinyNet, tiny_args
from torch import nn

from models.frozen import prepare_frozen_network
from models.recompute import Recompute, recompute_stages, stage_names
from runner.cli import main


def frozen(model: nn.Module) -> nn.Module:
    return model.eval().requires_grad_(False)


def output_and_input_grad(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    y = model(x)
    (y * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
    return y.detach(), x.grad


def saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes autograd keeps for backward after one forward pass (tensors saved for the graph)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x.clone().requires_grad_(True))
    return total


def test_recompute_keeps_outputs_and_input_gradients_of_a_tiny_network():
    torch.manual_seed(0)
    plain = frozen(TinyNet())
    wrapped = frozen(TinyNet())
    wrapped.load_state_dict(plain.state_dict())
    wrapped, count = recompute_stages(wrapped)
    assert count == 1 and isinstance(wrapped.features, Recompute)
    x = torch.rand(4, 3, 64, 64)
    y_plain, g_plain = output_and_input_grad(plain, x)
    y_wrapped, g_wrapped = output_and_input_grad(wrapped, x)
    assert torch.equal(y_wrapped, y_plain) and torch.equal(g_wrapped, g_plain)
    with torch.no_grad():  # without gradients the stage simply runs
        assert torch.equal(wrapped(x), plain(x))


def test_stages_are_the_blocks_of_common_networks_and_never_a_trainable_part():
    import torchvision

    resnet = frozen(torchvision.models.resnet18())
    assert stage_names(resnet) == [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    vit = frozen(torchvision.models.vit_b_16())
    assert stage_names(vit) == [f"encoder.layers.encoder_layer_{i}" for i in range(12)]
    torch.manual_seed(0)
    mobilenet = frozen(torchvision.models.mobilenet_v3_small())
    names = stage_names(mobilenet)
    assert names[0] == "features.0" and "features.1.block.0" in names and names[-1] == "classifier"
    wrapped = frozen(torchvision.models.mobilenet_v3_small())
    wrapped.load_state_dict(mobilenet.state_dict())
    recompute_stages(wrapped)  # inside residual blocks (whose sum is in place): still exact
    x = torch.rand(2, 3, 64, 64)
    for got, expected in zip(output_and_input_grad(wrapped, x), output_and_input_grad(mobilenet, x)):
        assert torch.equal(got, expected)
    mobilenet.classifier[-1].requires_grad_(True)  # linear probing's new head lives in the classifier block
    assert "classifier" not in stage_names(mobilenet)
    tiny = frozen(TinyNet())
    tiny.features[0].requires_grad_(True)
    assert stage_names(tiny) == []


def test_recompute_keeps_much_less_for_backward_on_resnet18():
    import torchvision

    torch.manual_seed(0)
    plain = frozen(torchvision.models.resnet18())
    wrapped = frozen(torchvision.models.resnet18())
    wrapped.load_state_dict(plain.state_dict())
    recompute_stages(wrapped)
    x = torch.rand(2, 3, 64, 64)
    assert saved_bytes(wrapped, x) < 0.3 * saved_bytes(plain, x)
    y_plain, g_plain = output_and_input_grad(plain, x)
    y_wrapped, g_wrapped = output_and_input_grad(wrapped, x)
    torch.testing.assert_close(y_wrapped, y_plain, rtol=0, atol=0)
    torch.testing.assert_close(g_wrapped, g_plain, rtol=0, atol=0)


def test_a_wrapped_stage_still_shows_its_fields():
    stage = Recompute(nn.Linear(3, 2))
    assert stage.weight is stage.module.weight and stage.out_features == 2
    with pytest.raises(AttributeError):
        stage.no_such_field  # noqa: B018


def test_efficientnet_with_every_rewrite_and_recompute_matches_without():
    """Stages are found before folding and folded one by one: the same folds, logits and gradient."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    reference = timm.create_model("tf_efficientnet_lite0", num_classes=10)
    for m in reference.modules():  # batch-norm statistics that folding has to get right
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    other = timm.create_model("tf_efficientnet_lite0", num_classes=10)
    other.load_state_dict(reference.state_dict())
    plain, plain_counts = prepare_frozen_network(frozen(reference))
    wrapped, counts = prepare_frozen_network(frozen(other), recompute=True)
    assert counts["stages_recomputed"] == 16
    assert counts["batch_norms_folded"] == plain_counts["batch_norms_folded"] > 0
    assert counts["same_convs_unpadded"] == plain_counts["same_convs_unpadded"] == 5
    x = torch.rand(2, 3, 64, 64)
    y_plain, g_plain = output_and_input_grad(plain, x)
    y_wrapped, g_wrapped = output_and_input_grad(wrapped, x)
    assert torch.equal(y_wrapped, y_plain) and torch.equal(g_wrapped, g_plain)


@pytest.mark.slow
def test_a_run_with_recompute_equals_one_without_and_keeps_its_folder(tmp_path, cifar_root):
    folders = {}
    for name, extra in (("plain", ()), ("recompute", ("--recompute",))):
        assert main("ilm_vp", tiny_args(tmp_path / name, cifar_root, "--prompt-init", "randn", *extra)) == 0
        (folders[name],) = [p.parent for p in (tmp_path / name).rglob("config.json")]
    assert folders["plain"].name == folders["recompute"].name
    thetas = {n: torch.load(f / "ckpt.pth", weights_only=False)["model"]["input_transform.theta"] for n, f in folders.items()}
    assert torch.equal(thetas["plain"], thetas["recompute"])
    rows = {n: (f / "metrics.jsonl").read_text().splitlines() for n, f in folders.items()}
    for a, b in zip(rows["plain"], rows["recompute"]):
        a, b = json.loads(a), json.loads(b)
        assert (a["train_loss"], a["test_acc"]) == (b["train_loss"], b["test_acc"])
    assert json.loads((folders["recompute"] / "results.json").read_text())["stages_recomputed"] == 1


def test_recompute_is_refused_for_a_trained_network(tmp_path, cifar_root, capsys):
    assert main("full_finetune", tiny_args(tmp_path, cifar_root, "--recompute")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --recompute is for frozen networks; full_finetune trains its network (its batch norms would update twice)"]
