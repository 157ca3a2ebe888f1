"""The low-rank prompt: rank, size, formula, initialisation and its gradients."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from common.errors import UserError
from models.prompts import PROMPTS, LowRankVisualPrompt, PromptSpec
from models.prompts.lowrank import LowRankOptions

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.5)


def normalized(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


@pytest.mark.parametrize("rank", [1, 4, 7])
def test_pattern_has_the_requested_rank_per_channel_and_two_thin_factors(rank):
    torch.manual_seed(0)
    prompt = PROMPTS["lowrank"](PromptSpec((16, 16), MEAN, STD, out_size=32, init="randn", options=LowRankOptions(rank=rank)))
    assert prompt.left.shape == (3, 32, rank) and prompt.right.shape == (3, rank, 32)
    assert sum(p.numel() for p in prompt.parameters()) == 3 * 2 * 32 * rank
    pattern = prompt.pattern()
    assert pattern.shape == (3, 32, 32)
    assert [int(torch.linalg.matrix_rank(pattern[c])) for c in range(3)] == [rank] * 3
    torch.testing.assert_close(pattern[1], prompt.left[1] @ prompt.right[1])


def test_default_rank_and_size_at_224():
    prompt = LowRankVisualPrompt(PromptSpec((32, 32), MEAN, STD))
    assert prompt.rank == 4 and sum(p.numel() for p in prompt.parameters()) == 5376  # 3 * (224 * 4 + 4 * 224)


def test_forward_resizes_adds_the_pattern_everywhere_then_normalizes():
    torch.manual_seed(0)
    prompt = LowRankVisualPrompt(PromptSpec((16, 16), MEAN, STD, out_size=32, init="randn"))
    x = torch.rand(2, 3, 16, 16)
    resized = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(prompt(x), normalized(resized + prompt.pattern()), atol=1e-5, rtol=0)
    big = torch.rand(2, 3, 32, 32)  # already at the network's size: not resized again
    torch.testing.assert_close(prompt(big), normalized(big + prompt.pattern()), atol=1e-5, rtol=0)


def test_zero_init_starts_from_the_plain_image_and_still_learns():
    torch.manual_seed(0)
    prompt = LowRankVisualPrompt(PromptSpec((16, 16), MEAN, STD, out_size=32))
    assert torch.equal(prompt.pattern(), torch.zeros(3, 32, 32)) and prompt.right.abs().sum() > 0
    x = torch.rand(2, 3, 16, 16)
    out = prompt(x)
    torch.testing.assert_close(out, normalized(F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True)), atol=1e-6, rtol=0)
    (out * torch.randn_like(out)).sum().backward()
    assert prompt.left.grad.abs().sum() > 0  # B moves from the first step ...
    assert torch.equal(prompt.right.grad, torch.zeros_like(prompt.right))  # ... A once B is non-zero


def test_rank_outside_the_image_is_an_error():
    with pytest.raises(UserError, match="--rank"):
        LowRankVisualPrompt(PromptSpec((16, 16), MEAN, STD, out_size=32, options=LowRankOptions(rank=0)))
    with pytest.raises(UserError, match="--rank"):
        LowRankVisualPrompt(PromptSpec((16, 16), MEAN, STD, out_size=32, options=LowRankOptions(rank=33)))
