"""Folding a frozen network's batch norms into its convolutions keeps its function and its input gradient."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from algorithms.cli import main
from conftest import TinyNet, tiny_args
from models.frozen import fold_batch_norms


def randomise_bn(model: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=gen))
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen))
    return model.eval().requires_grad_(False)


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3)
        self.bn_a = nn.BatchNorm2d(4)
        self.b = nn.Conv2d(4, 4, 3, bias=False)  # used twice: must not be folded
        self.bn_b = nn.BatchNorm2d(4)

    def forward(self, x):
        y = torch.relu(self.bn_a(self.a(x)))
        z = self.b(y)
        return self.bn_b(z) + z.mean()


def test_fold_keeps_output_and_input_gradient():
    model = randomise_bn(Branchy())
    folded, count = fold_batch_norms(model)
    assert count == 1
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == 1
    x = torch.rand(2, 3, 9, 9, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    torch.testing.assert_close(folded(x2), model(x), atol=1e-5, rtol=1e-5)
    model(x).square().sum().backward()
    folded(x2).square().sum().backward()
    torch.testing.assert_close(x2.grad, x.grad, atol=1e-4, rtol=1e-4)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 2  # the original is untouched


def test_trainable_or_training_batch_norms_stay():
    model = randomise_bn(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))
    model[1].weight.requires_grad_(True)
    assert fold_batch_norms(model)[1] == 0
    model = randomise_bn(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))).train()
    assert fold_batch_norms(model)[1] == 0


def test_timm_batchnorm_act_keeps_its_activation():
    timm_layers = pytest.importorskip("timm.layers")
    model = randomise_bn(nn.Sequential(nn.Conv2d(3, 4, 3), timm_layers.BatchNormAct2d(4, act_layer=nn.ReLU6)))
    folded, count = fold_batch_norms(model, example=torch.rand(2, 3, 8, 8))
    assert count == 1
    x = torch.rand(2, 3, 8, 8) * 4 - 2
    torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-5)


def test_folding_does_not_change_a_run(tmp_path, cifar_root):
    for name, extra in (("fold", []), ("plain", ["--no-fold-bn"])):
        assert main("ilm_vp", tiny_args(tmp_path / name, cifar_root, "--prompt-init", "randn", *extra)) == 0
    runs = {n: next((tmp_path / n).rglob("ckpt.pth")).parent for n in ("fold", "plain")}
    for epoch in ("epoch_001.json", "epoch_002.json"):
        assert json.loads((runs["fold"] / "mappings" / epoch).read_text()) == json.loads((runs["plain"] / "mappings" / epoch).read_text())
    theta = {n: torch.load(runs[n] / "ckpt.pth", weights_only=False)["model"]["input_transform.theta"] for n in runs}
    torch.testing.assert_close(theta["fold"], theta["plain"], atol=1e-4, rtol=1e-4)
    keys = {n: set(torch.load(runs[n] / "ckpt.pth", weights_only=False)["model"]) for n in runs}
    assert keys["fold"] == keys["plain"]  # checkpoints hold the same trainable state either way
    assert fold_batch_norms(TinyNet().eval().requires_grad_(False))[1] == 1  # and the tiny network does fold
