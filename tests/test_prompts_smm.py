"""SMM: the mask network's shapes and size, patch-wise upsampling, the prompt's formula, BN in train mode, LR groups."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_NETWORK, TinyNet, tiny_args
from test_cli import run_dir_of
from torch import nn

from algorithms.engine import Trainer
from algorithms.methods.visual_prompt import build_visual_prompt
from algorithms.settings import RunConfig
from common.errors import UserError
from data.registry import SubsetSpec, load_dataset
from models.prompts import PROMPTS, PromptSpec, SampleSpecificMaskedPrompt
from models.prompts.smm import MaskNetwork, SmmOptions, patchwise_upsample
from models.reprogrammer import ReprogrammingModel
from runner.cli import main
from runner.devices import setup_runtime
from runner.run_dir import RunDir

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.5)


def normalized(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def conv(c_in: int, c_out: int) -> int:
    return c_in * c_out * 9 + c_out


def test_patchwise_upsampling_copies_each_value_over_its_patch():
    mask = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    expected = torch.tensor(
        [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]], dtype=torch.float32
    ).view(1, 1, 4, 4)
    assert torch.equal(patchwise_upsample(mask, 2), expected)
    wide = torch.arange(2 * 3 * 2 * 3, dtype=torch.float32).view(2, 3, 2, 3)
    up = patchwise_upsample(wide, 8)
    assert up.shape == (2, 3, 16, 24) and torch.equal(up[1, 2, 8:16, 16:24], torch.full((8, 8), float(wide[1, 2, 1, 2])))
    assert torch.equal(up, F.interpolate(wide, scale_factor=8, mode="nearest"))


def test_mask_network_of_the_paper_shapes_and_parameter_count():
    net = MaskNetwork()  # 5 layers, patch 8
    convs = [m for m in net if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (3, 8, (3, 3)), (8, 16, (3, 3)), (16, 32, (3, 3)), (32, 64, (3, 3)), (64, 3, (3, 3))
    ]  # fmt: skip
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net) == 4 and sum(isinstance(m, nn.MaxPool2d) for m in net) == 3
    # convolutions + batch-norm weights and biases: about 26.5 K, as the paper says
    expected = conv(3, 8) + conv(8, 16) + conv(16, 32) + conv(32, 64) + conv(64, 3) + 2 * (8 + 16 + 32 + 64)
    assert expected == 26499 and sum(p.numel() for p in net.parameters()) == expected
    assert net(torch.rand(2, 3, 224, 224)).shape == (2, 3, 28, 28)
    vit = MaskNetwork(layers=6)  # the ViT variant adds the 64 -> 128 stage
    assert sum(p.numel() for p in vit.parameters()) == expected - conv(64, 3) + conv(64, 128) + 2 * 128 + conv(128, 3)
    assert vit(torch.rand(1, 3, 64, 64)).shape == (1, 3, 8, 8)
    assert MaskNetwork(layers=5, patch=16)(torch.rand(1, 3, 64, 64)).shape == (1, 3, 4, 4)


@pytest.mark.parametrize("layers, patch, message", [(5, 6, "power of two"), (3, 8, "max-pools"), (1, 1, "--mask-layers")])
def test_mask_network_rejects_impossible_shapes(layers, patch, message):
    with pytest.raises(UserError, match=message):
        MaskNetwork(layers, patch)


def test_prompt_is_the_normalized_image_plus_delta_times_the_patchwise_mask():
    torch.manual_seed(0)
    prompt = PROMPTS["smm"](PromptSpec((16, 16), MEAN, STD, out_size=32, options=SmmOptions(mask_patch=8)))
    x = torch.rand(4, 3, 16, 16)
    z = normalized(F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True))
    prompt.eval()
    torch.testing.assert_close(prompt(x), z, atol=1e-6, rtol=0)  # delta starts at zero
    with torch.no_grad():
        prompt.delta.copy_(torch.randn(3, 32, 32))
    small = prompt.mask_network(z)
    assert small.shape == (4, 3, 4, 4)
    mask = small.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)
    torch.testing.assert_close(prompt(x), z + prompt.delta * mask, atol=1e-5, rtol=0)
    # two images get different prompts: the mask is the image's own
    assert not torch.allclose(prompt(x)[0] - z[0], prompt(x)[1] - z[1])
    # an image already at the network's size (SMM's training crop) is not resized again
    big = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(prompt(big), normalized(big) + prompt.delta * patchwise_upsample(prompt.mask_network(normalized(big)), 8))
    with pytest.raises(ValueError):
        prompt(torch.rand(1, 3, 20, 20))
    with pytest.raises(UserError, match="must divide"):
        SampleSpecificMaskedPrompt(PromptSpec((16, 16), MEAN, STD, out_size=36))
    torch.testing.assert_close(prompt.pattern(), prompt.delta * torch.tensor(STD).view(3, 1, 1))  # pixel units, as every prompt


def test_gradients_reach_delta_and_the_mask_network():
    torch.manual_seed(0)
    prompt = SampleSpecificMaskedPrompt(PromptSpec((16, 16), MEAN, STD, out_size=32, init="randn"))
    prompt(torch.rand(4, 3, 16, 16)).square().sum().backward()
    assert prompt.delta.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in prompt.mask_network.parameters())


def test_model_trains_the_mask_batch_norm_keeps_the_frozen_network_in_eval_and_checkpoints_its_statistics():
    torch.manual_seed(0)
    prompt = SampleSpecificMaskedPrompt(PromptSpec((16, 16), MEAN, STD, out_size=32))
    net = TinyNet().requires_grad_(False)
    model = ReprogrammingModel(prompt, net, nn.Identity(), channels_last=False, fold_batch_norm=False)
    model.train()
    assert prompt.mask_network.training and all(m.training for m in prompt.mask_network.modules())
    assert not any(m.training for m in model.network.modules())
    before = prompt.mask_network[1].running_mean.clone()
    model(torch.rand(8, 3, 16, 16))
    assert not torch.equal(prompt.mask_network[1].running_mean, before)  # statistics move while training
    state = model.trainable_state()
    assert {"input_transform.mask_network.1.running_mean", "input_transform.mask_network.1.running_var"} <= set(state)
    assert not any(k.startswith("network.") for k in state) and model.trains_buffers
    model.eval()
    assert not prompt.mask_network.training


def build(cifar_root, tmp_path, **extra):
    config = RunConfig(
        method="ilm_vp", network=TINY_NETWORK, dataset="cifar10", epochs=4, batch_size=25, device="cpu",
        prompt="smm", results_path=str(tmp_path / "res"), milestones=[0.5, 0.75], extra=extra,
    )  # fmt: skip
    data = load_dataset("cifar10", cifar_root, batch_size=25, subset=SubsetSpec())
    runtime = setup_runtime("cpu", "fp32")
    experiment = build_visual_prompt(config, data, runtime)
    return Trainer(config, experiment, data, runtime, RunDir(tmp_path / "run", enabled=False)), experiment


def test_mask_network_learns_at_its_own_rate_and_optionally_without_decay(tmp_path, cifar_root):
    trainer, experiment = build(cifar_root, tmp_path, mask_lr=0.002, mask_decay=False)
    delta_group, mask_group = trainer.optimizer.param_groups
    assert delta_group["params"] == [experiment.model.input_transform.delta]
    assert len(mask_group["params"]) == len(list(experiment.model.input_transform.mask_network.parameters()))
    lrs = []
    for _ in range(4 * len(trainer.train_loader)):  # 2 steps per epoch: decays at epochs 2 and 3
        lrs.append([g["lr"] for g in trainer.optimizer.param_groups])
        trainer.optimizer.step()
        trainer.scheduler.step()
    assert [round(lr[0], 8) for lr in lrs[::2]] == [0.01, 0.01, 0.001, 0.0001]
    assert all(lr[1] == 0.002 for lr in lrs)
    decayed, _ = build(cifar_root, tmp_path, mask_lr=None)
    assert [g["lr"] for g in decayed.optimizer.param_groups] == [0.01, 0.01] and all(g["scheduled"] for g in decayed.optimizer.param_groups[1:])


def test_a_trainable_mapping_gets_a_third_group(tmp_path, cifar_root):
    config = RunConfig(method="ilm_vp", network=TINY_NETWORK, dataset="cifar10", prompt="smm", mapping="linear",
                       extra={"mask_lr": 0.003, "mapping_lr": 0.2})  # fmt: skip
    data = load_dataset("cifar10", cifar_root, batch_size=25, subset=SubsetSpec())
    experiment = build_visual_prompt(config, data, setup_runtime("cpu", "fp32"))
    pattern, mask, mapping = experiment.param_groups
    assert (pattern.get("lr"), mask["lr"], mapping["lr"]) == (None, 0.003, 0.2)  # the pattern learns at --lr
    assert experiment.info["mapping_params"] == sum(p.numel() for p in mapping["params"]) == 20 * 10 + 10
    assert experiment.info["prompt_params"] == 3 * 64 * 64 + 26499 and experiment.info["mask_params"] == 26499


def test_smm_flags_are_refused_by_other_prompts(tmp_path, cifar_root, capsys):
    assert main("ilm_vp", tiny_args(tmp_path / "a", cifar_root, "--mask-lr", "0.1")) == 2
    assert capsys.readouterr().err.strip() == "error: --mask-lr applies to --prompt smm, not --prompt pad"
    assert main("ilm_vp", tiny_args(tmp_path / "b", cifar_root, "--prompt", "watermark", "--mask-layers", "6")) == 2
    assert capsys.readouterr().err.strip() == "error: --mask-layers applies to --prompt smm, not --prompt watermark"


@pytest.mark.slow
def test_smm_script_end_to_end_counts_the_prompt_parameters(tmp_path, cifar_root):
    assert main("smm_vp", tiny_args(tmp_path / "res", cifar_root, "--mapping", "blmplus")) == 0
    run = run_dir_of(tmp_path / "res")
    results = json.loads((run / "results.json").read_text())
    delta = 3 * 64 * 64
    assert results["prompt_params"] == delta + 26499 and results["mask_params"] == 26499 and results["mapping_params"] == 0
    assert results["trainable_params"] == delta + 26499 and results["augment"] == "resize32_crop_flip"
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["prompt"] == "smm" and config["mapping"] == "blmplus"
