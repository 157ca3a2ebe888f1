"""Bahng et al.'s prompt designs: placement, shape, gradients, random-patch locations.

Built with unit statistics (mean 0, std 1), so the prompt's normalization leaves the image as it
is and its output is the image plus the pattern.
"""
from __future__ import annotations

import pytest
import torch

from common.errors import UserError
from models.clip.prompts import UNIT_STATISTICS, build_clip_prompt, clip_prompt_input_size
from models.prompts import FixedPatchPrompt, PaddingPrompt, PromptSizeOptions, PromptSpec, RandomPatchPrompt, ResizePaddingPrompt
from models.prompts.lowrank import LowRankOptions


def built(cls, image_size: int, prompt_size: int = 30, init: str = "zero", **kw):
    """``cls`` on a CLIP model of side ``image_size`` with ``--prompt-size prompt_size``."""
    options = PromptSizeOptions(prompt_size)
    side = cls.input_side(image_size, options)
    return cls(PromptSpec((side, side), *UNIT_STATISTICS, out_size=image_size, init=init, options=options, kind="clip"), **kw)


def changed(prompt, size=16):
    x = torch.zeros(2, 3, size, size)
    return (prompt(x) != 0).any(dim=(0, 1))


def test_padding_is_a_frame_of_the_given_width():
    torch.manual_seed(0)
    prompt = built(PaddingPrompt, 16, 3, "randn")
    frame = torch.ones(16, 16, dtype=torch.bool)
    frame[3:13, 3:13] = False
    assert torch.equal(changed(prompt), frame)
    assert sum(p.numel() for p in prompt.parameters()) == 3 * (2 * 3 * 16 + 2 * 10 * 3)
    assert sum(p.numel() for p in built(PaddingPrompt, 224, 30).parameters()) == 69840  # Bahng et al.'s count
    zero = built(PaddingPrompt, 16, 3, "zero")
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(zero(x), x)  # zero init: the first forward is the plain image


def test_padding_gradient_reaches_every_frame_value_once():
    prompt = built(PaddingPrompt, 16, 3)
    prompt(torch.zeros(4, 3, 16, 16)).sum().backward()
    for p in prompt.parameters():
        assert torch.equal(p.grad, torch.full_like(p, 4.0))  # one per image of the batch


def test_resize_padding_puts_the_smaller_image_inside_the_frame():
    """AttrVR's prompt: a 10-px image (16 - 2 x 3) placed at (3, 3) of a zero canvas, the frame added around it."""
    torch.manual_seed(0)
    prompt = built(ResizePaddingPrompt, 16, 3, "randn")
    assert prompt.input_size == 10 and clip_prompt_input_size("resize_padding", 224, PromptSizeOptions(16)) == 192
    assert clip_prompt_input_size("padding", 224, PromptSizeOptions(16)) == 224
    x = torch.randn(2, 3, 10, 10)
    out = prompt(x)
    assert out.shape == (2, 3, 16, 16)
    assert torch.equal(out[:, :, 3:13, 3:13], x)  # the image is never covered
    frame = prompt.pattern().expand(2, -1, -1, -1)
    assert torch.equal(out[:, :, :3], frame[:, :, :3]) and torch.equal(out[:, :, :, 13:], frame[:, :, :, 13:])
    assert sum(p.numel() for p in built(ResizePaddingPrompt, 224, 16).parameters()) == 3 * (2 * 16 * 224 + 2 * 192 * 16)
    zero = built(ResizePaddingPrompt, 16, 3, "zero")
    assert torch.equal(zero(x), torch.nn.functional.pad(x, (3, 3, 3, 3)))  # zero init: the image on the mean colour
    # an image of another size (a CNN's dataset image) is resized to the 10 px first
    assert prompt(torch.zeros(1, 3, 16, 16)).shape == (1, 3, 16, 16)


def test_fixed_patch_sits_top_left():
    torch.manual_seed(0)
    prompt = built(FixedPatchPrompt, 16, 5, "randn")
    expected = torch.zeros(16, 16, dtype=torch.bool)
    expected[:5, :5] = True
    assert torch.equal(changed(prompt), expected)
    prompt(torch.zeros(3, 3, 16, 16)).sum().backward()
    assert prompt.patch.shape == (3, 5, 5) and torch.equal(prompt.patch.grad, torch.full((3, 5, 5), 3.0))


def test_random_patch_moves_per_training_batch_and_is_seeded():
    torch.manual_seed(0)
    prompt = built(RandomPatchPrompt, 16, 5, "randn").train()

    def locations(generator_seed, n=12):
        prompt.use_generator(torch.Generator().manual_seed(generator_seed))
        out = []
        for _ in range(n):
            region = changed(prompt)
            top, left = prompt.last_location
            expected = torch.zeros(16, 16, dtype=torch.bool)
            expected[top : top + 5, left : left + 5] = True
            assert torch.equal(region, expected)  # the patch is where it says
            out.append((top, left))
        return out

    first = locations(1)
    assert len(set(first)) > 1  # moves between batches
    assert all(0 <= t <= 11 and 0 <= left <= 11 for t, left in first)  # stays inside the image
    assert locations(1) == first  # same generator seed, same locations
    assert locations(2) != first
    prompt.zero_grad()
    prompt(torch.zeros(2, 3, 16, 16)).sum().backward()
    assert torch.equal(prompt.patch.grad, torch.full((3, 5, 5), 2.0))


def test_random_patch_evaluation_replays_the_same_locations():
    prompt = built(RandomPatchPrompt, 16, 5, "randn", eval_seed=3)
    prompt.eval()
    first = [changed(prompt) is not None and prompt.last_location for _ in range(6)]
    prompt.train()
    changed(prompt)
    prompt.eval()  # entering eval reseeds: every evaluation pass sees the same sequence
    assert [changed(prompt) is not None and prompt.last_location for _ in range(6)] == first
    assert len(set(first)) > 1


def test_bad_prompt_settings_are_user_errors():
    with pytest.raises(UserError, match="half"):
        built(PaddingPrompt, 32, 16)
    with pytest.raises(UserError, match="prompt-size"):
        built(FixedPatchPrompt, 32, 40)
    with pytest.raises(UserError, match="unknown prompt 'expansive'; choose from acavp, fixed_patch, lowrank, padding, random_patch, resize_padding, smm, watermark"):
        build_clip_prompt("expansive", 32, PromptSizeOptions(4), "zero")  # the CNN prompt's other name
    assert isinstance(build_clip_prompt("pad", 32, PromptSizeOptions(4), "zero"), PaddingPrompt)  # the CNN frame's name: CLIP's frame
    with pytest.raises(UserError, match="init"):
        build_clip_prompt("padding", 32, PromptSizeOptions(4), "ones")


def test_lowrank_prompt_adds_a_rank_r_pattern_over_the_whole_image():
    torch.manual_seed(0)
    prompt = build_clip_prompt("lowrank", 16, LowRankOptions(rank=2), "randn")
    assert prompt.left.shape == (3, 16, 2) and prompt.right.shape == (3, 2, 16)
    assert [int(torch.linalg.matrix_rank(prompt.pattern()[c])) for c in range(3)] == [2, 2, 2]
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(prompt(x), x + prompt.left @ prompt.right)
    assert bool(changed(prompt).all())
    zero = build_clip_prompt("lowrank", 16, None, "zero")
    assert zero.rank == 4 and torch.equal(zero(x), x)  # B starts at zero: the plain image first
    assert sum(p.numel() for p in build_clip_prompt("lowrank", 224, None, "zero").parameters()) == 5376
