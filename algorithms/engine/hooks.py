"""What a method does around its epochs besides training: per-epoch refits, their statistics and records.

An :class:`EpochHook` runs before each epoch's training (the lower level of a bi-level method),
may watch every training chunk and every evaluation batch, writes its own files after the epoch,
and keeps state that goes into the checkpoint, so a resumed run continues exactly. The label
mapping's refit of ILM-VP (and BLM, FLM's one-off fit, ...), its per-epoch file
(``mappings/epoch_NNN.json``) and its heatmap counts are one such hook, :class:`MappingRefit`;
every family gets it unless it hands the engine other hooks. The trainer knows no mapping.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from algorithms.engine.evaluation import Observer
from algorithms.engine.step import StepOutput
from algorithms.mappings.base import accumulate_statistic, top1_one_hot
from algorithms.outputs import PredictionCounts, RunOutputs, mapped_sources
from algorithms.runtime import Runtime
from algorithms.settings import RunConfig
from data.loader import BatchLoader, to_float01
from models.reprogrammer import ReprogrammingModel


@dataclass
class EpochContext:
    """What a hook may use: the model, where it runs, the settings, and the training set in order."""

    model: ReprogrammingModel
    runtime: Runtime
    config: RunConfig
    stats_loader: BatchLoader  # the training split, unshuffled, at the evaluation batch size (no-grad passes)
    progress: Callable[[Iterable, str], Iterable]  # a progress display over a loader (main process, terminal only)
    outputs: RunOutputs | None = None  # the run's files (writers are no-ops on ranks other than 0)
    source_names: list[str] | None = None  # the names of the model's source outputs (Experiment.source_names)
    class_names: list[str] | None = None  # the target classes


class EpochHook:
    """Does nothing; subclasses override what they need. ``name`` keys its row entries' owner in errors."""

    name = "hook"

    def before_epoch(self, ctx: EpochContext, epoch: int) -> dict[str, Any]:
        """Runs before the epoch's training (timed as the epoch's mapping phase); returns metric-row entries."""
        return {}

    def start_training(self, ctx: EpochContext, epoch: int) -> None:
        """The epoch's training begins."""

    def resume_training(self, ctx: EpochContext, epoch: int) -> None:
        """The epoch's training continues after a stop (its state came back through :meth:`load_state_dict`)."""

    def on_chunk(self, output: StepOutput, labels: torch.Tensor) -> None:
        """Each training chunk's output (detached use only: gradients are not this hook's business)."""

    def end_training(self, ctx: EpochContext, epoch: int) -> None:
        """The epoch's training has ended (every rank calls it: reductions across ranks go here)."""

    def evaluation_observer(self, ctx: EpochContext, split: str) -> Observer | None:
        """A function to see every batch of the evaluation pass over ``split`` ("test", "val"), or None."""
        return None

    def after_epoch(self, ctx: EpochContext, epoch: int) -> PredictionCounts | None:
        """After the 1-based ``epoch``'s evaluation, before its checkpoint (every rank): write the
        hook's files; prediction counts returned are drawn with the epoch's snapshots (a heatmap)."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """Entries merged into the checkpoint (top-level keys, so they must not clash with the loop's);
        mid-epoch (a stop on request) they include what the epoch has collected so far."""
        return {}

    def load_state_dict(self, checkpoint: dict[str, Any], device: torch.device) -> None:
        """Restore from a checkpoint written by :meth:`state_dict` (the whole checkpoint dict)."""


class MappingRefit(EpochHook):
    """Refit the model's label mapping when it is due (``mapping.refresh_due``), from the current prompt.

    The statistics come from a no-grad pass over the training set before the epoch (the paper), or
    with ``--lm-source train`` from the previous epoch's training forward passes, collected here
    chunk by chunk (``pending`` between epochs, and in the checkpoint).
    """

    name = "mapping"

    def __init__(self) -> None:
        self.pending: torch.Tensor | None = None  # --lm-source train: counts from the last epoch
        self._collecting: torch.Tensor | None = None
        self._test_counts: torch.Tensor | None = None  # the epoch's test predictions, source top-1 x target

    @staticmethod
    def _zeros(ctx: EpochContext) -> torch.Tensor:
        mapping = ctx.model.label_mapping
        return torch.zeros(mapping.num_source, mapping.num_target, device=ctx.runtime.device)

    @torch.no_grad()
    def gather_statistics(self, ctx: EpochContext, epoch: int) -> torch.Tensor:
        """The statistics matrix ``[S, K]`` of the current prompt on the training set."""
        ctx.model.eval()
        mapping = ctx.model.label_mapping
        stats = self._zeros(ctx)
        for images, labels in ctx.progress(ctx.stats_loader, f"epoch {epoch + 1} mapping"):
            with ctx.runtime.eval_autocast():
                source = ctx.model.source_logits(to_float01(images))
            accumulate_statistic(stats, mapping.source_statistic(source.float()), labels)
        return ctx.runtime.all_reduce_sum(stats)

    def refit(self, ctx: EpochContext, epoch: int) -> int | None:
        """Refit now; returns how many targets changed source (None at the first fit)."""
        mapping = ctx.model.label_mapping
        previous = {k: v.clone() for k, v in mapping.state_dict().items()}
        stats = self.pending if ctx.config.lm_source == "train" and self.pending is not None else self.gather_statistics(ctx, epoch)
        self.pending = None
        mapping.fit(stats)
        return mapping.changes_since(previous) if epoch > 0 else None

    def before_epoch(self, ctx: EpochContext, epoch: int) -> dict[str, Any]:
        due = ctx.model.label_mapping.refresh_due(epoch)
        return {"mapping_changes": self.refit(ctx, epoch) if due else None}

    def start_training(self, ctx: EpochContext, epoch: int) -> None:
        config = ctx.config
        collect = config.lm_source == "train" and epoch + 1 < config.epochs and ctx.model.label_mapping.refresh_due(epoch + 1)
        self._collecting = self._zeros(ctx) if collect else None
        self._mapping = ctx.model.label_mapping

    def resume_training(self, ctx: EpochContext, epoch: int) -> None:
        self._mapping = ctx.model.label_mapping

    def on_chunk(self, output: StepOutput, labels: torch.Tensor) -> None:
        if self._collecting is not None:
            accumulate_statistic(self._collecting, self._mapping.source_statistic(output.source.detach().float()), labels)

    def end_training(self, ctx: EpochContext, epoch: int) -> None:
        if self._collecting is not None:
            self.pending = ctx.runtime.all_reduce_sum(self._collecting)
        self._collecting = None

    def evaluation_observer(self, ctx: EpochContext, split: str) -> Observer | None:
        """On the test split, count each sample's source top-1 against its label (the heatmap);
        a mapping that reads features, not source labels, has none."""
        if split != "test" or ctx.model.label_mapping.reads_features:
            return None
        counts = self._test_counts = self._zeros(ctx)

        def observe(logits: torch.Tensor, source: torch.Tensor | None, labels: torch.Tensor) -> None:
            accumulate_statistic(counts, top1_one_hot(source.float()), labels)

        return observe

    def after_epoch(self, ctx: EpochContext, epoch: int) -> PredictionCounts | None:
        """The mapping's file of the epoch, and the test prediction counts for its heatmap."""
        mapping = ctx.model.label_mapping
        ctx.outputs.write_mapping(epoch, mapping.describe(ctx.source_names, ctx.class_names))
        counts, self._test_counts = self._test_counts, None
        if counts is None:
            return None
        counts = ctx.runtime.all_reduce_sum(counts)
        S, K = mapping.num_source, mapping.num_target
        return PredictionCounts(epoch, counts.round().long().cpu().numpy(), mapped_sources(mapping, S, K), list(ctx.source_names), list(ctx.class_names))

    def state_dict(self) -> dict[str, Any]:
        state = {"pending_stats": None if self.pending is None else self.pending.cpu()}
        if self._collecting is not None:  # inside an epoch (a stop on request)
            state["collecting_stats"] = self._collecting.cpu()
        return state

    def load_state_dict(self, checkpoint: dict[str, Any], device: torch.device) -> None:
        pending, collecting = checkpoint.get("pending_stats"), checkpoint.get("collecting_stats")
        self.pending = None if pending is None else pending.to(device)
        self._collecting = None if collecting is None else collecting.to(device)
