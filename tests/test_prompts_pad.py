"""ExpansiveVisualPrompt: placement, mask, range, gradient, errors."""
from __future__ import annotations

import pytest
import torch

from common.errors import UserError
from models.prompts import ExpansiveVisualPrompt, PromptSpec

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)


def unnormalize(y: torch.Tensor) -> torch.Tensor:
    return y * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)


@pytest.mark.parametrize("size, offset", [(32, 96), (128, 48), (33, 96), (224, 0), (1, 112)])
def test_image_sits_unresized_at_the_centre(size, offset):
    assert (224 - size + 1) // 2 == offset
    prompt = ExpansiveVisualPrompt(PromptSpec((size, size), MEAN, STD))
    x = torch.rand(2, 3, size, size)
    canvas = unnormalize(prompt(x))
    assert canvas.shape == (2, 3, 224, 224)
    torch.testing.assert_close(canvas[:, :, offset : offset + size, offset : offset + size], x, atol=1e-6, rtol=0)


def test_frame_is_sigmoid_theta_and_stays_in_unit_range():
    prompt = ExpansiveVisualPrompt(PromptSpec((32, 32), MEAN, STD, init="randn"))
    with torch.no_grad():
        prompt.theta.mul_(10)
    canvas = unnormalize(prompt(torch.ones(1, 3, 32, 32))).detach()
    frame = torch.ones(224, 224, dtype=torch.bool)
    frame[96:128, 96:128] = False
    torch.testing.assert_close(canvas[0][:, frame], torch.sigmoid(prompt.theta)[:, frame], atol=1e-5, rtol=0)
    assert float(canvas.min()) >= -1e-6 and float(canvas.max()) <= 1 + 1e-6


def test_zero_init_gives_a_grey_frame():
    prompt = ExpansiveVisualPrompt(PromptSpec((32, 32), MEAN, STD))
    canvas = unnormalize(prompt(torch.zeros(1, 3, 32, 32)))
    assert torch.allclose(canvas[0, :, 0, 0], torch.full((3,), 0.5), atol=1e-6)
    assert float(prompt.mask.sum()) == 224 * 224 - 32 * 32


def test_gradient_reaches_only_the_frame():
    prompt = ExpansiveVisualPrompt(PromptSpec((32, 32), MEAN, STD))
    (prompt(torch.rand(4, 3, 32, 32)) * torch.rand(4, 3, 224, 224).add(0.1)).sum().backward()
    grad = prompt.theta.grad
    assert float(grad[:, 96:128, 96:128].abs().max()) == 0.0
    assert bool((grad[:, :96].abs() > 0).all())


def test_image_mask_lets_the_prompt_write_inside_the_image():
    inner = torch.tril(torch.ones(8, 8))  # writable lower triangle and diagonal
    prompt = ExpansiveVisualPrompt(PromptSpec((8, 8), MEAN, STD, out_size=16, image_mask=inner))
    x = torch.zeros(1, 3, 8, 8)
    canvas = unnormalize(prompt(x))[0, 0, 4:12, 4:12]
    torch.testing.assert_close(canvas, 0.5 * inner, atol=1e-6, rtol=0)
    prompt(x).sum().backward()
    assert float(prompt.theta.grad[0, 4:12, 4:12][inner == 0].abs().max()) == 0.0


def test_non_square_inputs_and_normalization():
    prompt = ExpansiveVisualPrompt(PromptSpec((20, 30), MEAN, STD, out_size=64))
    x = torch.rand(1, 3, 20, 30)
    y = prompt(x)
    top, left = (64 - 20 + 1) // 2, (64 - 30 + 1) // 2
    expected = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    torch.testing.assert_close(y[:, :, top : top + 20, left : left + 30], expected, atol=1e-5, rtol=0)


def test_input_larger_than_canvas_is_a_user_error():
    with pytest.raises(UserError, match="larger than the 224x224"):
        ExpansiveVisualPrompt(PromptSpec((256, 256), MEAN, STD))
    with pytest.raises(UserError, match="init"):
        ExpansiveVisualPrompt(PromptSpec((32, 32), MEAN, STD, init="ones"))


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("size, mask", [((32, 32), None), ((8, 8), torch.tril(torch.ones(8, 8))), ((5, 9), None)])
def test_fused_prompt_equals_pad_add_normalize(memory_format, size, mask):
    """The one-pass canvas equals ``normalize(pad(x) + sigmoid(theta) * mask)``, values and gradients."""
    out_size = 24 if size != (32, 32) else 224
    prompt = ExpansiveVisualPrompt(PromptSpec(size, MEAN, STD, out_size=out_size, init="randn", image_mask=mask))
    prompt.memory_format = memory_format
    x = torch.rand(3, 3, *size, requires_grad=True)
    weight = torch.randn(3, 3, out_size, out_size)

    got = prompt(x)
    assert got.is_contiguous(memory_format=memory_format)
    (got * weight).sum().backward()
    got_theta, got_x = prompt.theta.grad.clone(), x.grad.clone()

    prompt.theta.grad, x.grad = None, None
    pad = (prompt.left, prompt.right, prompt.top, prompt.bottom)
    canvas = torch.nn.functional.pad(x, pad) + torch.sigmoid(prompt.theta) * prompt.mask
    reference = (canvas - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    (reference * weight).sum().backward()
    torch.testing.assert_close(got, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_theta, prompt.theta.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_x, x.grad, atol=1e-5, rtol=1e-5)


def test_model_asks_the_prompt_for_its_network_layout():
    from algorithms.mappings import IdentityMapping
    from models.reprogrammer import ReprogrammingModel

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    for channels_last in (True, False):
        prompt = ExpansiveVisualPrompt(PromptSpec((8, 8), MEAN, STD, out_size=16))
        ReprogrammingModel(prompt, net, IdentityMapping(4), channels_last=channels_last)
        expected = torch.channels_last if channels_last else torch.contiguous_format
        assert prompt(torch.rand(2, 3, 8, 8)).is_contiguous(memory_format=expected)


@pytest.mark.parametrize("input_size", [16, 12, 40])
def test_input_size_resizes_the_image_before_padding(input_size):
    """AutoVP's input scaling: ``normalize(pad(resize(x, N)) + sigmoid(theta) * frame)``; the frame narrows."""
    from models.prompts.pad import PadOptions

    prompt = ExpansiveVisualPrompt(PromptSpec((32, 32), MEAN, STD, out_size=48, init="randn", options=PadOptions(input_size=input_size)))
    x = torch.rand(2, 3, 32, 32)
    resized = torch.nn.functional.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False, antialias=True)
    offset = (48 - input_size + 1) // 2
    assert (prompt.top, prompt.left) == (offset, offset) and prompt.placed_size == (input_size, input_size)
    pad = (prompt.left, prompt.right, prompt.top, prompt.bottom)
    canvas = torch.nn.functional.pad(resized, pad) + torch.sigmoid(prompt.theta) * prompt.mask
    torch.testing.assert_close(unnormalize(prompt(x)), canvas, atol=1e-5, rtol=0)
    assert float(prompt.mask.sum()) == 48 * 48 - input_size**2  # the frame is what the image leaves
    with pytest.raises(ValueError):
        prompt(resized)  # the prompt takes the dataset's images and resizes them itself


def test_input_size_errors():
    from models.prompts.pad import PadOptions

    with pytest.raises(UserError, match="--input-size"):
        ExpansiveVisualPrompt(PromptSpec((32, 32), MEAN, STD, out_size=48, options=PadOptions(input_size=49)))
    with pytest.raises(UserError, match="--input-size"):
        ExpansiveVisualPrompt(PromptSpec((8, 8), MEAN, STD, out_size=16, image_mask=torch.ones(8, 8), options=PadOptions(input_size=12)))
    same = ExpansiveVisualPrompt(PromptSpec((32, 32), MEAN, STD, out_size=48, options=PadOptions(input_size=32)))
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(same(x), ExpansiveVisualPrompt(PromptSpec((32, 32), MEAN, STD, out_size=48))(x))
