"""Folding a frozen network's batch norms into its convolutions keeps its function and its input gradient."""
from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import TinyNet, tiny_args
from torch import nn

from models.frozen import fold_batch_norms
from runner.cli import main


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


@pytest.mark.slow
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


# ---------------------------------------------------------------------------------------------
# "SAME" convolutions without a padded input, activations out of place under autograd


@pytest.mark.parametrize("size", [(224, 224), (15, 16), (7, 9)])
@pytest.mark.parametrize("kernel, stride, dilation, groups", [(3, 2, 1, 1), (5, 2, 1, 6), (3, 1, 1, 6), (4, 2, 1, 1), (3, 2, 2, 6), ((3, 5), (2, 1), 1, 1)])
def test_padding_free_same_conv_equals_timm_conv2d_same(size, kernel, stride, dilation, groups):
    from timm.layers import Conv2dSame

    from models.frozen import PaddingFreeSameConv2d, padding_free_same_convs

    torch.manual_seed(0)
    conv = Conv2dSame(6, 12, kernel, stride, dilation=dilation, groups=groups).requires_grad_(False)
    model = nn.Sequential(conv)
    x = torch.randn(2, 6, *size)
    expected_x = x.clone().requires_grad_(True)
    expected = model(expected_x)
    weight = torch.randn_like(expected)
    (expected * weight).sum().backward()

    model, count = padding_free_same_convs(model)
    assert count == 1 and isinstance(model[0], PaddingFreeSameConv2d) and model[0].weight is conv.weight
    for layout in (torch.contiguous_format, torch.channels_last):
        model.to(memory_format=layout)
        got_x = x.clone().contiguous(memory_format=layout).requires_grad_(True)
        got = model(got_x)
        (got * weight).sum().backward()
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got_x.grad, expected_x.grad, atol=1e-5, rtol=1e-5)


def test_padding_free_same_conv_follows_a_reloaded_weight():
    from timm.layers import Conv2dSame

    from models.frozen import padding_free_same_convs

    model, _ = padding_free_same_convs(nn.Sequential(Conv2dSame(3, 4, 3, 2).requires_grad_(False)))
    x = torch.randn(1, 3, 10, 10)
    model(x)  # builds the cached kernel
    with torch.no_grad():
        model[0].weight.mul_(2.0)
    reference = Conv2dSame(3, 4, 3, 2)
    reference.load_state_dict(model[0].state_dict())
    torch.testing.assert_close(model(x), reference(x))


def test_trainable_same_convs_are_left_alone():
    from timm.layers import Conv2dSame

    from models.frozen import padding_free_same_convs

    _, count = padding_free_same_convs(nn.Sequential(Conv2dSame(3, 4, 3, 2)))
    assert count == 0


@pytest.mark.parametrize("activation", [nn.ReLU6(inplace=True), nn.Hardtanh(-1.0, 2.0, inplace=True), nn.SiLU(inplace=True)])
def test_grad_aware_activation_is_exact_and_in_place_only_without_grad(activation):
    from models.frozen import GradAwareInplace, grad_aware_activations

    out_of_place = copy.deepcopy(activation)
    out_of_place.inplace = False
    reference = nn.Sequential(nn.Conv2d(3, 4, 3), out_of_place)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), activation)
    model[0].load_state_dict(reference[0].state_dict())
    model, count = grad_aware_activations(model)
    assert count == 1 and isinstance(model[1], GradAwareInplace)
    assert set(model.state_dict()) == {"0.weight", "0.bias"}
    x = torch.randn(2, 3, 8, 8) * 3
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    torch.testing.assert_close(model(xa), reference(xb))
    model(xa).sum().backward()
    reference(xb).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad)
    pre = torch.randn(2, 4, 6, 6) * 3
    with torch.no_grad():  # no gradient: in place, the input is overwritten with the output
        out = model[1](pre)
    assert out.data_ptr() == pre.data_ptr()
    y = torch.randn(2, 4, 6, 6, requires_grad=True) * 3  # recorded: a new tensor
    assert model[1](y).data_ptr() != y.data_ptr()


def test_engine_runs_efficientnet_with_every_rewrite():
    """The real timm EfficientNet-Lite0: same logits and input gradient after all rewrites."""
    timm = pytest.importorskip("timm")
    from models.frozen import prepare_frozen_network

    torch.manual_seed(0)
    net = randomise_bn(timm.create_model("tf_efficientnet_lite0", num_classes=10))
    reference = timm.create_model("tf_efficientnet_lite0", num_classes=10)
    reference.load_state_dict(net.state_dict())
    reference = reference.eval().requires_grad_(False)
    prepared, counts = prepare_frozen_network(net)
    assert counts["same_convs_unpadded"] == 5 and counts["activations_grad_aware"] > 0 and counts["batch_norms_folded"] > 0
    x = torch.rand(2, 3, 64, 64)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    got, expected = prepared(xa), reference(xb)
    torch.testing.assert_close(got, expected, atol=1e-3, rtol=1e-3)
    got.sum().backward()
    expected.sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-3, rtol=1e-3)


def test_fast_frozen_ops_flag_reaches_the_model_and_keeps_the_run_folder():
    from algorithms.mappings import IdentityMapping
    from models.frozen import GradAwareInplace
    from models.reprogrammer import ReprogrammingModel
    from runner.config import build_parser, config_from_args

    parser = build_parser("ilm_vp")
    base = ["--network", "resnet18", "--dataset", "cifar10"]
    on = config_from_args("ilm_vp", parser.parse_args(base))
    off = config_from_args("ilm_vp", parser.parse_args([*base, "--no-fast-frozen-ops"]))
    assert on.fast_frozen_ops and not off.fast_frozen_ops
    assert on.config_hash() == off.config_hash()  # an execution detail: same run folder
    for config in (on, off):
        net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU6(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()).requires_grad_(False)
        model = ReprogrammingModel(nn.Identity(), net, IdentityMapping(4), fast_frozen_ops=config.fast_frozen_ops)
        wrapped = any(isinstance(m, GradAwareInplace) for m in model.modules())
        assert wrapped == config.fast_frozen_ops
