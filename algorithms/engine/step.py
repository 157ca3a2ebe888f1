"""A method's training step: what one chunk of a batch computes, and its loss.

The loop (:mod:`algorithms.engine.loop`) splits a batch into chunks, runs the step on each under
the run's autocast, scales and accumulates the gradients, and steps the optimizer; the step only
says what the model computes and what is minimised. The default is the ILM-VP objective:
cross-entropy on the mapped (target) logits. A method with another objective subclasses
:class:`TrainingStep` and hands an instance to :class:`~algorithms.engine.experiment.Experiment`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class StepOutput:
    """One chunk's result: its mean loss, the target logits (training accuracy) and, where the
    model has them, the source logits (statistics for the label mapping)."""

    loss: torch.Tensor  # float32 scalar: the mean over the chunk's samples
    logits: torch.Tensor  # [n, K] target logits
    source: torch.Tensor | None = None  # [n, S] source logits, None where the model has no source labels


class TrainingStep:
    """Cross-entropy on the mapped logits (ILM-VP and every family that does not say otherwise)."""

    def forward(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        """``images`` in ``[0, 1]``, already augmented; runs inside the run's autocast."""
        target_logits, source_logits = model(images, return_source=True)
        return StepOutput(F.cross_entropy(target_logits.float(), labels), target_logits, source_logits)
