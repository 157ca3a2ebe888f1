"""What a method family hands the engine: the model, its training step, its per-epoch hooks.

The engine owns *when and where* things run (epochs, chunks, ranks, precision, checkpoints);
the family owns *what* is computed: which parts train (the model and its optimizer groups),
the loss of a step (:class:`~algorithms.engine.step.TrainingStep`), what happens around each
epoch (:class:`~algorithms.engine.hooks.EpochHook`, e.g. the ILM mapping refit) and any edit
of the gradients before the optimizer steps (``optimizer_hooks``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from algorithms.engine.hooks import EpochHook, MappingRefit
from algorithms.engine.step import TrainingStep
from algorithms.engine.trainable import Trainable
from algorithms.runtime import Runtime
from data.augment_draws import AugmentDraws
from data.registry import TargetData

Augment = Callable[[torch.Tensor, AugmentDraws], torch.Tensor]  # (float batch, its per-sample draws) -> augmented batch
# called right before every optimizer step, with gradients unscaled and summed over chunks and ranks
OptimizerHook = Callable[[torch.optim.Optimizer], None]


@dataclass
class Precomputed:
    """What a precompute step hands back: the inputs it computed once and the model that trains on them."""

    # shares its trainable modules, under the same state-dict names, with Experiment.model, so
    # checkpoints of either load into the other
    model: Trainable
    data: TargetData  # splits of FeatureSet
    info: dict = field(default_factory=dict)  # merged into Experiment.info (e.g. how long it took)


# (data, runtime, eval batch size) -> Precomputed; runs once, before the loaders are built
Precompute = Callable[[TargetData, Runtime, int], Precomputed]


def default_hooks() -> list[EpochHook]:
    """Every family's default: refit the model's label mapping when the mapping asks for it, write its
    files and heatmap counts. It reads ``model.label_mapping``: a model without one hands the engine its own hooks."""
    return [MappingRefit()]


@dataclass
class Experiment:
    """What a method hands the engine: the model, the names of its source outputs, extras."""

    model: Trainable  # an nn.Module: a ReprogrammingModel for every family so far
    source_names: list[str]
    train_augment: Augment | None = None  # on-device augmentation, training batches only
    # optimizer groups (default: every trainable parameter); a group may set its own "lr";
    # "scheduled": False keeps its learning rate constant after warmup instead of following --scheduler;
    # "recipe": {run settings} puts it in an optimizer of its own with those settings (schedule.build_optimizations)
    param_groups: list[dict] | None = None
    info: dict = field(default_factory=dict)  # method facts for config.json / results.json
    precompute: Precompute | None = None  # replace the images by what a frozen part computes from them
    step: TrainingStep = field(default_factory=TrainingStep)  # the loss of one chunk (default: CE on mapped logits)
    hooks: list[EpochHook] = field(default_factory=default_hooks)  # around each epoch, in order
    optimizer_hooks: list[OptimizerHook] = field(default_factory=list)  # gradient edits before each optimizer step
