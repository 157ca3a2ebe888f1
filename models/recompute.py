"""Activation recomputation for a frozen network: less memory for one more forward pass.

Training a prompt needs the gradient at the network's input, so autograd keeps every activation
of the frozen network until the backward pass: at 224 px this, not the weights, is what fills
memory. :func:`recompute_stages` wraps a handful of the network's stages (residual blocks,
transformer blocks, the stages of a feature pyramid) in :class:`Recompute`, which keeps only a
stage's inputs and runs the stage again during the backward pass (PyTorch's non-reentrant
activation checkpointing, which lets the gradient reach an input that is not a leaf, such as
the prompted image). Outputs and gradients are those of the plain network; the cost is about
one more forward pass per training step.

Stages are found from the module tree alone, so any network works: starting below the root,
a module is wrapped whole when it is small enough (at most ``1/segments`` of the network's
layers) or is a block of layers itself; a container of blocks is opened and its children are
visited. Single layers and modules that hold a trainable parameter are never wrapped.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.networks import replace_module

DEFAULT_SEGMENTS = 16  # EfficientNet-Lite0 at 224 px: 16 stages keep 30% less than 8 (the largest stage halves)
# a module whose own layers make up more than this share of it is a block (conv, norm, conv, ...)
# and is wrapped whole; below it, it is a container of blocks (plus a stem or a norm) and is opened
OWN_LAYER_SHARE = 0.25


class Recompute(nn.Module):
    """Runs ``module`` keeping only its inputs for backward; the backward pass recomputes the rest.

    Without gradient recording (evaluation, the mapping pass) it is ``module`` itself. Attributes
    it does not have are looked up on ``module``, so code that reads a wrapped block's fields still works.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        if not torch.is_grad_enabled():
            return self.module(*args, **kwargs)
        return checkpoint(self.module, *args, use_reentrant=False, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("_") or name == "module":
                raise
            return getattr(self._modules["module"], name)


def _layer_count(module: nn.Module) -> int:
    """Modules of the subtree that hold parameters themselves: a proxy for its depth in layers."""
    return sum(1 for m in module.modules() if next(m.parameters(recurse=False), None) is not None)


def _own_layers(module: nn.Module) -> int:
    """Layers ``module`` holds directly: its own parameters and its children that are single layers."""
    own = 1 if next(module.parameters(recurse=False), None) is not None else 0
    return own + sum(_layer_count(c) for c in module.children() if next(c.children(), None) is None)


def _frozen(module: nn.Module) -> bool:
    return not any(p.requires_grad for p in module.parameters())


def stage_names(model: nn.Module, segments: int = DEFAULT_SEGMENTS) -> list[str]:
    """Dotted names of the disjoint submodules :func:`recompute_stages` wraps, in module order."""
    limit = _layer_count(model) / segments
    chosen: list[str] = []

    def visit(name: str, module: nn.Module) -> None:
        count = _layer_count(module)
        if next(module.children(), None) is None or count == 0:
            return  # a single layer (its input is what backward keeps anyway) or nothing to compute
        is_block = _own_layers(module) > OWN_LAYER_SHARE * count
        if name and _frozen(module) and count >= 2 and (count <= limit or is_block):
            chosen.append(name)
            return
        if name and is_block:
            return  # a block holding a trainable layer: left as it is
        for child_name, child in module.named_children():
            visit(f"{name}.{child_name}" if name else child_name, child)

    visit("", model)
    return chosen


def recompute_stages(model: nn.Module, segments: int = DEFAULT_SEGMENTS) -> tuple[nn.Module, int]:
    """Wrap the stages of ``model`` (in place) in :class:`Recompute`; returns (model, stages wrapped)."""
    names = stage_names(model, segments)
    for name in names:
        replace_module(model, name, Recompute(model.get_submodule(name)))
    return model, len(names)
