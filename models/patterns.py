"""The pieces every visual prompt (CNN and CLIP) shares: a pattern's initial values, the low-rank
pattern of LoR-VP, and how a pattern is drawn as an image.

``models/prompts`` imports this module; the prompts serve CNNs and CLIP alike.

Initialisation (``--prompt-init``), one rule for every prompt: ``zero`` starts every trainable
value of the pattern at 0; ``randn`` draws each from ``N(0, scale^2)``, where ``scale`` is the
prompt's own (1 for a pattern behind a sigmoid, as ILM-VP's code draws its ``theta``; 0.01 for an
unbounded additive pattern, small next to the image). A prompt part whose start is random whatever
``--prompt-init`` says (low-rank's ``A``, SMM's mask network) draws it too. Every draw comes from
the generator the prompt is given (:func:`common.seeding.init_generator`), never from the global
random state, so the initial prompt does not depend on what was built before it.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from common.errors import UserError

INITS = ("zero", "randn")
ADDITIVE_RANDN_SCALE = 0.01  # ``randn`` of an unbounded additive pattern: N(0, 0.01^2) per value


def check_init(init: str) -> str:
    """``init`` if it is one of :data:`INITS`, else a :class:`UserError` (``--prompt-init`` is a flag)."""
    if init not in INITS:
        raise UserError(f"unknown prompt init {init!r}; choose {' or '.join(INITS)}")
    return init


def initial_values(shape: tuple[int, ...], init: str, generator: torch.Generator, scale: float = ADDITIVE_RANDN_SCALE) -> torch.Tensor:
    """A trainable tensor's start: zeros, or ``N(0, scale^2)`` drawn from ``generator`` (``randn``)."""
    if check_init(init) == "zero":
        return torch.zeros(shape)
    return scale * torch.randn(shape, generator=generator)


@contextmanager
def drawing_from(generator: torch.Generator) -> Iterator[None]:
    """Inside, the global CPU random state is seeded from one draw of ``generator``; outside it is
    untouched. For modules that initialise themselves (``nn.Conv2d``'s default init) from the
    global state: built inside, they start from ``generator`` with PyTorch's own initialisers."""
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class LowRankPattern(nn.Module):
    """LoR-VP's pattern (Jin et al., ICLR 2025): ``B @ A`` per channel, ``B [C, S, r]``, ``A [C, r, S]``.

    It costs ``C * 2 * S * r`` values (5,376 at 224 px and rank 4) and has rank at most ``r``.
    ``zero``: ``B = 0`` and each channel's ``A`` drawn as ``nn.Linear(S, r)`` draws its weight
    (Kaiming-uniform, ``a = sqrt(5)``), LoRA's convention (Hu et al., ICLR 2022): the pattern starts
    at zero yet ``B`` gets a gradient at once (were both zero, neither would move). ``randn``: both
    ``N(0, 0.01^2)``. The CNN and the CLIP low-rank prompts are this module plus where they add it.
    """

    def __init__(self, channels: int, size: int, rank: int, init: str, generator: torch.Generator) -> None:
        super().__init__()
        if not 1 <= rank <= size:
            raise UserError(f"--rank must be between 1 and the {size}px input, got {rank}")
        self.rank = rank
        if check_init(init) == "zero":
            left = torch.zeros(channels, size, rank)
            right = torch.empty(channels, rank, size)
            for c in range(channels):
                nn.init.kaiming_uniform_(right[c], a=math.sqrt(5), generator=generator)
        else:
            left = initial_values((channels, size, rank), init, generator)
            right = initial_values((channels, rank, size), init, generator)
        self.left = nn.Parameter(left)  # B
        self.right = nn.Parameter(right)  # A

    def forward(self) -> torch.Tensor:
        """The pattern ``B @ A``, ``[C, S, S]``."""
        return torch.bmm(self.left, self.right)


# ---------------------------------------------------------------------------------------------
# Drawing a pattern


@dataclass(frozen=True)
class PromptPicture:
    """A pattern drawn as an image: ``image [C, H, W]`` in [0, 1] and how to read it.

    ``scale`` None: the image is the pattern itself (values in [0, 1] shown as they are).
    ``scale`` s: the pattern is signed; mid-grey is 0, black ``-s`` and white ``+s`` per channel
    (``s`` is the pattern's largest ``|value|``), in ``units``.
    """

    image: torch.Tensor
    scale: float | None = None
    units: str = "pixel"

    def caption(self) -> str:
        """How to read the image, for a figure's title."""
        if self.scale is None:
            return f"{self.units} values as they are"
        return f"grey 0, white +{self.scale:.3g}, black -{self.scale:.3g} ({self.units} units)"


def signed_picture(pattern: torch.Tensor, units: str = "pixel") -> PromptPicture:
    """``0.5 + 0.5 * pattern / max|pattern|``: a signed pattern centred at grey, nothing clipped.

    An all-zero pattern is plain grey with scale 0.
    """
    pattern = pattern.detach().float().cpu()
    scale = float(pattern.abs().max()) if pattern.numel() else 0.0
    image = torch.full_like(pattern, 0.5) if scale == 0 else 0.5 + 0.5 * pattern / scale
    return PromptPicture(image.clamp(0, 1), scale, units)  # the clamp only absorbs rounding
