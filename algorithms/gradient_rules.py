"""Gradient rules applied right before an optimizer step (``Experiment.optimizer_hooks``).

ACAVP's CLIP recipe (Enomoto, NeurIPS 2025) follows EVP (Wu et al., 2022, "Unleashing the Power
of Visual Prompting At the Pixel Level"): each parameter's gradient, the batch mean the loss gives,
is divided by its L2 norm, so the step size is the learning rate whatever the gradient's scale
(SGD at lr 40 then moves each parameter by about 40 in L2, spread over its values); the gain's
and the affine warp's gradients are then clipped element-wise, since seven affine scalars moved
by a unit-norm step at lr 40 would saturate their tanh/sigmoid bounds in one step. The clip value
is our choice (the paper's was not available offline): ``ACAVP_CLIP_VALUE``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

OptimizerHook = Callable[[torch.optim.Optimizer], None]
ACAVP_CLIP_VALUE = 0.001  # element-wise bound of the gain's and affine's normalised gradients


def normalise_and_clip(normalised: Iterable[nn.Parameter], clipped: Iterable[nn.Parameter] = (), clip_value: float = ACAVP_CLIP_VALUE) -> OptimizerHook:
    """A hook dividing the gradient of each of ``normalised`` by its L2 norm (a zero gradient stays
    zero), then clamping the gradients of ``clipped`` to ``[-clip_value, clip_value]``.

    Parameters of the optimizer not named are left alone. Usable as
    ``optimizer.register_step_pre_hook(lambda opt, args, kwargs: hook(opt))`` too.
    """
    normalised_ids = {id(p) for p in normalised}
    clipped_ids = {id(p) for p in clipped}

    def hook(optimizer: torch.optim.Optimizer) -> None:
        with torch.no_grad():
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    if id(p) in normalised_ids:
                        norm = p.grad.norm()
                        p.grad.div_(torch.where(norm > 0, norm, torch.ones_like(norm)))
                    if id(p) in clipped_ids:
                        p.grad.clamp_(-clip_value, clip_value)

    return hook
