"""The watermark prompt and its training augmentation: placement, reference crops, train-only use."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_args
from test_augment import build  # the prompt's experiment from a RunConfig (its default recipe is tested there)
from test_cli import run_dir_of

from algorithms.engine import Trainer
from data.augment import crop_padding_for, random_crop_flip
from data.augment_draws import AugmentDraws
from data.augment_recipes import build_recipe
from models.prompts import PROMPTS, PromptSpec
from models.prompts.watermark import WatermarkVisualPrompt
from runner.cli import main
from runner.run_dir import RunDir

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.5)


def normalized(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def test_watermark_resizes_normalizes_then_adds_the_pattern_everywhere():
    prompt = PROMPTS["watermark"](PromptSpec((8, 8), MEAN, STD, out_size=16))
    x = torch.rand(2, 3, 8, 8)
    resized = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False, antialias=True)
    assert torch.allclose(prompt(x), normalized(resized), atol=1e-6)  # zero init: the plain resized image
    with torch.no_grad():
        prompt.delta.copy_(torch.linspace(-1, 1, 3 * 16 * 16).view(3, 16, 16))
    assert torch.allclose(prompt(x), normalized(resized) + prompt.delta, atol=1e-6)  # BLM: normalize, then add
    prompt(x).sum().backward()
    assert (prompt.delta.grad != 0).all()  # every pixel of the pattern is trainable
    assert [n for n, _ in prompt.named_parameters()] == ["delta"]
    # the pixel-space pattern shown in snapshots: delta * std
    assert torch.allclose(prompt.pattern(), prompt.delta * torch.tensor(STD).view(3, 1, 1), atol=1e-6)


def test_watermark_hand_computed_values():
    """One 2x2 image, out_size 2 (no resize): (x - mean) / std + delta, value by value."""
    prompt = WatermarkVisualPrompt(PromptSpec((2, 2), MEAN, STD, out_size=2))
    x = torch.tensor([0.0, 0.25, 0.5, 1.0]).view(1, 1, 2, 2).repeat(1, 3, 1, 1)
    with torch.no_grad():
        prompt.delta.copy_(torch.tensor([0.5, -1.0, 2.0]).view(3, 1, 1).expand(3, 2, 2))
    out = prompt(x)
    # red channel: mean 0.5, std 0.25, delta 0.5 -> (x - 0.5) * 4 + 0.5
    assert torch.allclose(out[0, 0].flatten(), torch.tensor([-1.5, -0.5, 0.5, 2.5]))
    # blue channel: mean 0.3, std 0.5, delta 2 -> (x - 0.3) * 2 + 2
    assert torch.allclose(out[0, 2].flatten(), torch.tensor([1.4, 1.9, 2.4, 3.4]))


def test_watermark_of_an_input_sized_image_is_not_resized_and_takes_any_size():
    prompt = WatermarkVisualPrompt(PromptSpec((16, 16), MEAN, STD, out_size=16))
    x = torch.rand(1, 3, 16, 16)
    assert torch.allclose(prompt(x), normalized(x), atol=1e-6)
    assert prompt(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)  # e.g. a view already cropped to 16


def test_resize_crop_is_blms_resize_228_then_random_crop_224():
    x = torch.rand(6, 3, 10, 10)
    views = build_recipe("resize4_crop", (10, 10), out_size=8)(x, AugmentDraws.first(6, seed=1))
    big = F.interpolate(x, size=(12, 12), mode="bilinear", align_corners=False, antialias=True)  # out + 4
    offsets = (AugmentDraws.first(6, seed=1).uniform(2) * 5).long()  # 2 uniforms per sample: no flip
    for i in range(6):  # per-sample reference: the same draws, sliced one by one
        top, left = offsets[i].tolist()
        assert torch.equal(views[i], big[i, :, top : top + 8, left : left + 8])
    assert len({tuple(o) for o in offsets.tolist()}) > 1  # offsets differ between samples
    assert views.shape == (6, 3, 8, 8)


def reference_crop_flip(x: torch.Tensor, draws: AugmentDraws, padding: int) -> torch.Tensor:
    """Per-sample slicing, from the same 3 uniforms per sample (top, left, flip)."""
    b, _, h, w = x.shape
    u = draws.uniform(3)
    offsets = (u[:, :2] * (2 * padding + 1)).long()
    flips = u[:, 2] < 0.5
    out = []
    for i in range(b):
        padded = F.pad(x[i], (padding,) * 4)
        top, left = int(offsets[i, 0]), int(offsets[i, 1])
        crop = padded[:, top : top + h, left : left + w]
        out.append(crop.flip(-1) if flips[i] else crop)
    return torch.stack(out)


def test_random_crop_flip_matches_a_per_sample_reference():
    x = torch.rand(16, 3, 8, 6)
    fast = random_crop_flip(x, AugmentDraws.first(16, seed=3), padding=2)
    slow = reference_crop_flip(x, AugmentDraws.first(16, seed=3), padding=2)
    assert torch.equal(fast, slow)
    assert not torch.equal(fast, x)
    assert torch.equal(random_crop_flip(x, AugmentDraws.first(16, seed=3), padding=2), fast)  # seeded
    assert crop_padding_for((32, 32)) == 4 and crop_padding_for((224, 224)) == 28 and crop_padding_for((4, 4)) == 1


@pytest.mark.slow
def test_augmentation_runs_on_training_batches_only_and_evaluation_is_deterministic(tmp_path, cifar_root):
    config, data, runtime, experiment = build(cifar_root, tmp_path, "watermark", None)
    seen = []
    augment = experiment.train_augment

    def spy(x, draws):
        seen.append(x.shape[0])
        return augment(x, draws)

    experiment.train_augment = spy
    run_dir = RunDir(config.run_path())
    run_dir.prepare(resume=False, overwrite=False, eval_only=False)
    trainer = Trainer(config, experiment, data, runtime, run_dir)
    trainer.fit()
    assert sum(seen) == len(data.train)  # every training image, once, and nothing else
    first = trainer.evaluate(trainer.test_loader)
    assert trainer.evaluate(trainer.test_loader) == first and sum(seen) == len(data.train)


@pytest.mark.slow
def test_watermark_end_to_end(tmp_path, cifar_root):
    assert main("ilm_vp", tiny_args(tmp_path / "res", cifar_root, "--prompt", "watermark")) == 0
    run = run_dir_of(tmp_path / "res")
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["prompt"] == "watermark" and config["resolved"]["augment"] == "resize4_crop"
    ckpt = torch.load(run / "ckpt.pth", map_location="cpu", weights_only=False)
    delta = ckpt["model"]["input_transform.delta"]
    assert delta.shape == (3, 64, 64) and delta.abs().sum() > 0  # trained from zero
    assert json.loads((run / "results.json").read_text())["trainable_params"] == 3 * 64 * 64


def test_unknown_prompt_is_a_one_line_error(tmp_path, cifar_root, capsys):
    assert main("ilm_vp", tiny_args(tmp_path / "res", cifar_root, "--prompt", "stripes")) == 2
    assert capsys.readouterr().err.strip() == "error: argument --prompt: unknown prompt 'stripes'; choose from acavp, fixed_patch, lowrank, pad, resize_padding, smm, watermark (see --help)"
