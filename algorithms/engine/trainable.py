"""What the trainer trains: any module that says which of its parts train, and what it outputs.

The trainer (:mod:`algorithms.engine.loop`) never looks inside the model: transform -> network ->
label mapping (:class:`~models.reprogrammer.ReprogrammingModel`), several prompts through one
network, or a head on cached features are all alike to it. The loss of a training chunk comes
from the family's :class:`~algorithms.engine.step.TrainingStep` (which calls the model), the
evaluation of a split from the model's target logits (:func:`~algorithms.engine.evaluation.split_metrics`);
what a part records (the label mapping's files and heatmap) is its :class:`~algorithms.engine.hooks.EpochHook`'s.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Trainable(Protocol):
    """The contract between a model and the trainer (an ``nn.Module`` besides).

    ``model(images)`` gives the target logits ``[n, K]`` of images in ``[0, 1]``;
    ``model(images, return_source=True)`` gives ``(target logits, the outputs hooks and the step
    read)`` (a mapped model's source logits). Optional: ``compile_frozen(**options)`` (what
    ``--compile`` compiles; default: the whole model) and ``rewrites`` (what preparing a frozen
    network did, for results.json).
    """

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Every parameter the optimizers update."""
        ...

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint must hold to restore the trained parts (their buffers too)."""
        ...

    @property
    def trains_buffers(self) -> bool:
        """Whether a trained part keeps state besides its parameters (batch-norm statistics) that ranks must share."""
        ...

    def __call__(self, images: torch.Tensor, return_source: bool = False): ...
