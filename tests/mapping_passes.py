"""The label mapping's passes on a built trainer, for the tests: the trainer itself knows no mapping
(its :class:`~algorithms.engine.hooks.MappingRefit` hook does), so tests reach them through the hook."""
from __future__ import annotations

import torch

from algorithms.engine import MappingRefit, split_metrics


def mapping_refit(trainer) -> MappingRefit:
    """The trainer's mapping hook (the default hook of every family)."""
    return next(h for h in trainer.hooks if isinstance(h, MappingRefit))


def gather_statistics(trainer, epoch: int = 0) -> torch.Tensor:
    """The mapping's statistics ``[S, K]`` of the current prompt on the training set (the mapping pass)."""
    hook = next((h for h in trainer.hooks if isinstance(h, MappingRefit)), None) or MappingRefit()
    return hook.gather_statistics(trainer.context, epoch)


def refresh_mapping(trainer, epoch: int) -> int | None:
    """Refit the mapping now, as before ``epoch``; how many targets changed source (None at the first fit)."""
    return mapping_refit(trainer).refit(trainer.context, epoch)


def accuracy_and_test_counts(trainer) -> tuple[float, torch.Tensor]:
    """The test pass as the trainer runs it: top-1 accuracy (%) and the heatmap's counts ``[S, K]``
    (source top-1 against target label), collected by a fresh mapping hook's observer."""
    hook = MappingRefit()
    observer = hook.evaluation_observer(trainer.context, "test")
    trainer.model.eval()
    acc = split_metrics(trainer.model, trainer.test_loader, trainer.runtime, [observer])["acc"]
    return acc, hook._test_counts
