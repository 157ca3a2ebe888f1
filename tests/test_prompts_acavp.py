"""ACAVP (affine warp, colour gain, additive prompt in the empty band): geometry, bounds, gradients, CLIP, resume."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from clip_helpers import private_cache  # noqa: F401  (a fixture)
from conftest import same_training, straight_and_resumed, tiny_args

from algorithms.gradient_rules import normalise_and_clip
from common.errors import UserError
from models.affine_colour import AffineColourAdditive, affine_values, colour_gain, sampling_theta
from models.clip.prompts import build_clip_prompt
from models.prompts import PROMPTS, AffineColourAdditivePrompt, PromptSpec
from models.prompts.acavp import AcavpOptions
from runner.cli import main

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.5)



def pixels(prompt: AffineColourAdditivePrompt, x: torch.Tensor) -> torch.Tensor:
    """The prompt's output back in [0, 1] pixel space."""
    return prompt(x) * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)


def test_registered_with_the_cnn_constructor_and_clearly_named_parameters():
    prompt = PROMPTS["acavp"](PromptSpec((16, 16), MEAN, STD, out_size=32, init="zero", image_mask=None, options=None))
    assert isinstance(prompt, AffineColourAdditivePrompt)
    shapes = {name: tuple(p.shape) for name, p in prompt.named_parameters()}
    assert shapes == {"affine": (7,), "gain": (3, 32, 32), "prompt": (3, 32, 32)}
    assert prompt(torch.rand(2, 3, 16, 16)).shape == (2, 3, 32, 32)
    assert prompt(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)
    assert prompt.pattern().shape == (3, 32, 32)


def test_the_start_shrinks_the_image_to_the_top_left_by_sigmoid_1():
    """At the start the warp is a scaling by sigmoid(1) = 0.731 about the top-left corner: compared
    with a hand-built affine_grid (output -> input: u_in = (u + 1) / s - 1)."""
    torch.manual_seed(0)
    prompt = AffineColourAdditivePrompt(PromptSpec((32, 32), MEAN, STD, out_size=32))
    s = 1 / (1 + math.exp(-1.0))
    assert abs(s - 0.731) < 1e-3
    theta = torch.tensor([[[1 / s, 0.0, 1 / s - 1], [0.0, 1 / s, 1 / s - 1]]])
    torch.testing.assert_close(sampling_theta(prompt.affine, 32), theta)
    x = torch.rand(2, 3, 32, 32)
    grid = F.affine_grid(theta.expand(2, -1, -1), [2, 3, 32, 32], align_corners=False)
    expected = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    torch.testing.assert_close(pixels(prompt, x), expected, atol=1e-5, rtol=0)
    # the image fills the top-left 73 %: an L-shaped band along the right and bottom is empty
    coverage = prompt.coverage()[0, 0]
    inside, outside = math.floor(s * 32) - 1, math.ceil(s * 32) + 1
    assert torch.all(coverage[:inside, :inside] > 1 - 1e-6)  # 1 up to the rounding of the bilinear weights
    assert torch.all(coverage[outside:, :] == 0) and torch.all(coverage[:, outside:] == 0)


def test_a_half_scale_about_the_corner_is_the_two_by_two_average_in_the_top_left_quadrant():
    """A pixel-level check: scale 1/2 about the top-left corner puts output pixel (i, j) on the
    boundary of input pixels 2i, 2i + 1 (and 2j, 2j + 1), so bilinear sampling averages them."""
    prompt = AffineColourAdditivePrompt(PromptSpec((16, 16), MEAN, STD, out_size=16))
    with torch.no_grad():
        prompt.affine[1:3] = 0.0  # sigmoid(0) = 1/2
    x = torch.rand(1, 3, 16, 16)
    out = pixels(prompt, x)
    torch.testing.assert_close(out[..., :8, :8], F.avg_pool2d(x, 2), atol=1e-5, rtol=0)
    assert out[..., 8:, :].abs().max() < 1e-6 and out[..., :, 8:].abs().max() < 1e-6


def test_centre_pivot_leaves_a_frame_all_round():
    prompt = AffineColourAdditivePrompt(PromptSpec((32, 32), MEAN, STD, out_size=32, options=AcavpOptions(warp_pivot="centre")))
    coverage = prompt.coverage()[0, 0]
    assert coverage[16, 16] > 1 - 1e-6 and coverage[0, 16] == 0 and coverage[16, 0] == 0 and coverage[31, 16] == 0 and coverage[16, 31] == 0
    torch.testing.assert_close(coverage, coverage.flip(0).flip(1))  # symmetric about the middle
    with pytest.raises(UserError):
        AffineColourAdditive(32, pivot="middle")


def test_the_gain_starts_at_exactly_one():
    prompt = AffineColourAdditivePrompt(PromptSpec((32, 32), MEAN, STD, out_size=32))
    assert torch.equal(colour_gain(prompt.gain), torch.ones(3, 32, 32))
    with torch.no_grad():
        prompt.gain.fill_(1e4)
    assert torch.equal(colour_gain(prompt.gain), torch.full((3, 32, 32), 6.0))  # bounded by 6


def test_the_additive_prompt_only_touches_where_the_warp_left_the_canvas_empty():
    torch.manual_seed(0)
    prompt = AffineColourAdditivePrompt(PromptSpec((32, 32), MEAN, STD, out_size=32))
    with torch.no_grad():
        prompt.affine.copy_(torch.tensor([0.7, 0.5, 1.5, -0.4, 0.3, 0.8, -0.2]))  # a general warp
    x = torch.zeros(2, 3, 32, 32)  # black: an image pixel that is exactly 0 is still not "empty"
    x[:, :, ::3] = torch.rand(2, 3, 11, 32)
    before = pixels(prompt, x)
    with torch.no_grad():
        prompt.prompt.copy_(torch.randn(3, 32, 32))
    after = pixels(prompt, x)
    coverage = prompt.coverage()[0, 0].detach()
    inside = coverage > 1 - 1e-6  # 1 up to the rounding of the bilinear weights
    assert inside.sum() > 100 and (coverage == 0).sum() > 100
    change = after - before
    assert change[:, :, inside].abs().max() < 1e-5
    torch.testing.assert_close(change[:, :, coverage == 0], prompt.prompt.detach()[None, :, coverage == 0].expand(2, -1, -1), atol=1e-5, rtol=0)
    torch.testing.assert_close(change, ((1 - coverage) * prompt.prompt.detach())[None].expand(2, -1, -1, -1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("raw", [1e6, -1e6, 3.0, -0.5])
def test_every_affine_scalar_stays_in_its_bounds(raw):
    values = affine_values(torch.full((7,), raw), 224)
    assert abs(values["rotation"]) <= 0.1 and abs(values["shear_x"]) <= 0.1 and abs(values["shear_y"]) <= 0.1
    assert 0 <= values["scale_x"] <= 1 and 0 <= values["scale_y"] <= 1
    assert abs(values["translate_x"]) <= 0.05 * 224 + 1e-4 and abs(values["translate_y"]) <= 0.05 * 224 + 1e-4
    if raw == 1e6:
        assert math.isclose(float(values["rotation"]), 0.1, rel_tol=1e-6) and math.isclose(float(values["translate_x"]), 11.2, rel_tol=1e-6)


def test_a_translation_moves_the_image_by_whole_pixels():
    """Translation +1 pixel in x at scale 1 moves the image one pixel right; the left column is empty."""
    prompt = AffineColourAdditivePrompt(PromptSpec((40, 40), MEAN, STD, out_size=40))
    with torch.no_grad():
        prompt.affine.zero_()
        prompt.affine[1:3] = 30.0  # scale sigmoid(30) = 1 in float32
        prompt.affine[5] = math.atanh(0.5)  # 0.05 * 40 * tanh(a) = 1 pixel
    x = torch.rand(1, 3, 40, 40)
    out = pixels(prompt, x)
    torch.testing.assert_close(out[..., 1:], x[..., :-1], atol=1e-4, rtol=0)
    assert out[..., 0].abs().max() < 1e-6


def test_gradients_reach_the_warp_the_gain_and_the_prompt():
    torch.manual_seed(0)
    prompt = AffineColourAdditivePrompt(PromptSpec((16, 16), MEAN, STD, out_size=32))
    weights = torch.randn(3, 32, 32)
    (prompt(torch.rand(4, 3, 16, 16)) * weights).sum().backward()
    for name, p in prompt.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert torch.all(prompt.affine.grad != 0)  # each of the 7 scalars moves the output


def test_gradient_normalisation_and_clipping_against_a_hand_computation():
    a, b, c, d = (torch.nn.Parameter(torch.zeros(2)) for _ in range(4))
    optimizer = torch.optim.SGD([a, b, c, d], lr=1.0)
    a.grad, b.grad, c.grad, d.grad = torch.tensor([3.0, 4.0]), torch.tensor([3.0, -4.0]), torch.zeros(2), torch.tensor([3.0, 4.0])
    normalise_and_clip([a, b, c], [b], clip_value=0.7)(optimizer)
    assert torch.allclose(a.grad, torch.tensor([0.6, 0.8]))  # [3, 4] / 5
    assert torch.allclose(b.grad, torch.tensor([0.6, -0.7]))  # [0.6, -0.8] clipped to +-0.7
    assert torch.equal(c.grad, torch.zeros(2))  # a zero gradient stays zero
    assert torch.equal(d.grad, torch.tensor([3.0, 4.0]))  # not named: untouched


def test_cnn_and_clip_prompts_share_one_implementation():
    torch.manual_seed(0)
    cnn = AffineColourAdditivePrompt(PromptSpec((32, 32), MEAN, STD, out_size=32))
    clip = build_clip_prompt("acavp", 32, None, "zero", mean=MEAN, std=STD)
    assert type(clip) is type(cnn) and isinstance(cnn, AffineColourAdditive)
    with torch.no_grad():
        for p in (cnn.affine, cnn.gain, cnn.prompt):
            p.add_(0.3 * torch.randn_like(p))
    clip.load_state_dict(cnn.state_dict())
    x = torch.rand(2, 3, 32, 32)
    # on CLIP the prompt receives CLIP's resized images in [0, 1] and normalizes them, as on a CNN
    torch.testing.assert_close(clip(x), cnn(x), atol=1e-5, rtol=0)


def test_warp_pivot_is_refused_for_other_prompts(tmp_path, cifar_root, capsys):
    assert main("ilm_vp", tiny_args(tmp_path / "res", cifar_root, "--warp-pivot", "centre")) == 2
    assert "--warp-pivot applies to --prompt acavp" in capsys.readouterr().err


@pytest.mark.slow
def test_the_recipe_defaults_and_the_engine_calls_the_gradient_rule_before_every_step(tmp_path, cifar_root, monkeypatch):
    from algorithms.methods import prompting, visual_prompt

    seen = []

    def recording(normalised, clipped=()):
        hook = normalise_and_clip(normalised, clipped)
        names = {id(p): n for n, p in (("affine", clipped[0]), ("gain", clipped[1]))}

        def wrapped(optimizer):
            hook(optimizer)
            params = [p for g in optimizer.param_groups for p in g["params"]]
            seen.append({names.get(id(p), "other"): (float(p.grad.norm()), float(p.grad.abs().max())) for p in params})

        return wrapped

    monkeypatch.setattr(prompting, "normalise_and_clip", recording)
    assert main("acavp_vp", tiny_args(tmp_path / "res", cifar_root, "--epochs", "1")) == 0  # normalised by default
    (run,) = [p.parent for p in (tmp_path / "res").rglob("config.json")]
    config = json.loads((run / "config.json").read_text())["config"]
    assert (config["prompt"], config["mapping"], config["optimizer"], config["momentum"], config["scheduler"]) == ("acavp", "flm", "sgd", 0.9, "cosine")
    assert config["lr"] == visual_prompt.ACAVP_CNN_LR and config["extra"]["gradient_rule"] == "normalised"
    results = json.loads((run / "results.json").read_text())
    assert results["augment"] == "resize32_crop_flip+trivialaugment_wide"  # the paper's order: resize, crop and flip, then TrivialAugment
    assert results["prompt_params"] == 7 + 2 * 3 * 64 * 64
    samples = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["train_samples"]
    assert len(seen) == -(-samples // 16)  # one call per optimizer step
    for step in seen:
        assert step["affine"][1] <= 1.0001e-3 and step["gain"][1] <= 1.0001e-3  # clipped after normalisation (float32 0.001)
        assert abs(step["other"][0] - 1) < 1e-5  # the prompt's gradient has unit norm


@pytest.mark.slow
def test_resume_ends_exactly_like_an_uninterrupted_run(tmp_path, cifar_root, monkeypatch):
    straight, resumed = straight_and_resumed("acavp_vp", lambda res: tiny_args(res, cifar_root, "--epochs", "2", "--lr", "0.5"), tmp_path, monkeypatch)
    assert set(straight["model"]) >= {"input_transform.affine", "input_transform.gain", "input_transform.prompt"}
    assert same_training(straight, resumed)
    assert not torch.equal(straight["model"]["input_transform.affine"], torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]))  # it trained


def test_the_written_out_inverse_inverts_the_forward_matrix():
    from models.affine_colour import forward_matrix, inverse_matrix

    values = affine_values(torch.tensor([0.7, 0.5, -1.5, -0.4, 0.3, 0.8, -0.2]), 64)
    torch.testing.assert_close(inverse_matrix(values) @ forward_matrix(values), torch.eye(2), atol=1e-6, rtol=0)


@pytest.mark.slow
@pytest.mark.usefixtures("private_cache")
def test_acavp_clip_end_to_end_on_a_tiny_clip(tmp_path, cifar_root):
    from clip_helpers import run_dir_of as clip_run_dir
    from clip_helpers import tiny_clip_args

    results = tmp_path / "res"
    assert main("acavp_clip", tiny_clip_args(results, cifar_root, "--epochs", "1", "--no-zero-shot", "--batch-size", "8", prompt_size=None)) == 0
    run = clip_run_dir(results, "acavp_clip")
    out = json.loads((run / "results.json").read_text())
    assert out["trainable_params"] == 7 + 2 * 3 * 32 * 32  # at the tiny CLIP's 32 px
    assert out["augment"] == "resize32_crop_flip+trivialaugment_wide" and out["gradient_rule"].startswith("unit L2 norm")
    state = torch.load(run / "ckpt.pth", weights_only=False)["model"]
    assert not torch.equal(state["input_transform.prompt.affine"], torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]))
