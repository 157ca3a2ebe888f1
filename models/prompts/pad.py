"""The ILM-VP padding prompt: the image in the centre of the canvas, a trainable frame around it.

The image sits unresized (ILM-VP) or, with ``--input-size N`` (AutoVP's input scaling, Tsao et
al., ICLR 2024), resized to ``N`` x ``N`` first, so the width of the frame becomes a choice.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from common.argtypes import positive_int
from common.errors import UserError
from common.options import Options, option
from models.layers import resize_square
from models.patterns import initial_values
from models.prompts.base import PromptSpec, VisualPrompt
from models.prompts.registry import register_prompt


@dataclass(frozen=True)
class PadOptions(Options):
    input_size: int | None = option(None, "resize the image to N x N (antialiased bilinear) before padding it into the network's input (AutoVP's input scaling)",
                                    default_help="the image's own size", type=positive_int, metavar="N")  # fmt: skip


class _PlaceOnCanvas(torch.autograd.Function):
    """``canvas`` broadcast over the batch with ``image`` added at ``(top, left)``, in one full-size write.

    Written out as pad, add, normalize and a layout change, the prompt costs four passes over the
    ``B x C x 224 x 224`` input forward and three backward (7-10% of a CPU epoch); here it is one
    write forward and one batch sum backward, in the memory format the network wants.
    """

    @staticmethod
    def forward(ctx, canvas: torch.Tensor, image: torch.Tensor, top: int, left: int, memory_format: torch.memory_format):
        h, w = image.shape[-2:]
        out = canvas.expand(image.shape[0], -1, -1, -1).contiguous(memory_format=memory_format)
        out[:, :, top : top + h, left : left + w] += image
        ctx.box, ctx.image_shape = (top, left, h, w), image.shape
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        top, left, h, w = ctx.box
        grad_canvas = grad.sum(0, keepdim=True) if ctx.needs_input_grad[0] else None
        grad_image = grad[:, :, top : top + h, left : left + w].sum_to_size(ctx.image_shape) if ctx.needs_input_grad[1] else None
        return grad_canvas, grad_image, None, None, None


@register_prompt(
    "pad",
    "ILM-VP's expansive prompt: the image unresized in the centre of the network's input, a trainable sigmoid frame around it",
    aliases={"cnn": ("padding", "expansive")},  # on CLIP scripts "padding" is Bahng's frame (frame.py)
)
class ExpansiveVisualPrompt(VisualPrompt):
    """The ILM-VP prompt: the image sits in the centre of a larger canvas.

    The canvas is ``out_size`` square; the image (``h x w``, or ``N x N`` after an antialiased
    bilinear resize when ``options.input_size`` is ``N``) has its top-left corner at
    ``((out-h+1)//2, (out-w+1)//2)``. The trainable pattern ``sigmoid(theta)`` fills the frame around the image
    and any image pixels that ``image_mask`` marks writable, so the prompted input stays in
    ``[0, 1]``; normalization with the network's statistics comes after. ``theta`` starts at zero
    (a grey frame) or, with ``randn``, from ``N(0, 1)`` as in the ILM-VP code.

    ``memory_format`` is the layout of the output (the wrapping model sets channels-last when its
    network runs that way, so no conversion pass follows).
    """

    memory_format: torch.memory_format = torch.contiguous_format
    OPTIONS = PadOptions
    DEFAULT_AUGMENT = "none"  # ILM-VP trains without augmentation
    CROP_FLIP = "pad_crop_flip"
    SIGNED = False  # sigmoid(theta) * mask is in [0, 1]: drawn as it is
    RANDN_SCALE = 1.0  # theta behind a sigmoid, as ILM-VP's code draws it

    def __init__(self, spec: PromptSpec) -> None:
        super().__init__(spec)
        out_size, image_mask = spec.out_size, spec.image_mask
        resize_to = self.options.input_size
        if resize_to is not None:
            if not 0 < resize_to <= out_size:
                raise UserError(f"--input-size must be between 1 and the {out_size}px canvas, got {resize_to}")
            if image_mask is not None:
                raise UserError("--input-size cannot resize an image whose pixels the prompt also writes (this dataset's prompt mask)")
        h, w = (resize_to, resize_to) if resize_to is not None else self.image_size
        if h > out_size or w > out_size:
            raise UserError(
                f"input size {h}x{w} is larger than the {out_size}x{out_size} prompt canvas; use --image-size {out_size} or less"
            )
        self.placed_size = (h, w)  # the image's size on the canvas
        self.top, self.left = (out_size - h + 1) // 2, (out_size - w + 1) // 2
        self.bottom, self.right = out_size - h - self.top, out_size - w - self.left
        mask = torch.ones(1, out_size, out_size)
        inner = torch.zeros(h, w) if image_mask is None else torch.as_tensor(image_mask, dtype=torch.float32)
        if inner.shape != (h, w):
            raise ValueError(f"image mask must be {h}x{w}, got {tuple(inner.shape)}")
        mask[0, self.top : self.top + h, self.left : self.left + w] = inner
        self.register_buffer("mask", mask)
        self.theta = nn.Parameter(initial_values((spec.channels, out_size, out_size), spec.init, spec.generator, self.RANDN_SCALE))

    def pattern(self) -> torch.Tensor:
        """``sigmoid(theta) * mask`` in pixel units, ``[C, out, out]``: zero where the prompt cannot write."""
        return torch.sigmoid(self.theta) * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_size(x, resized_too=False)
        if self.placed_size != self.image_size:
            x = resize_square(x, self.placed_size[0])
        # normalize(pad(x) + pattern) == pad(x * scale) + (pattern * scale + shift): the affine
        # normalization maps the padding zeros to zero, so it splits into the image and the canvas
        scale, shift = self.normalize.scale, self.normalize.shift
        canvas = self.pattern() * scale + shift
        return _PlaceOnCanvas.apply(canvas, x * scale, self.top, self.left, self.memory_format)
