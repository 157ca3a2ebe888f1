"""A run's batches: the training order, the chunk a training forward pass takes, the no-grad batch.

Resolved once, before the first epoch and outside the trainer: ``--micro-batch`` (a number
checked against batch statistics, or ``auto`` probed on the device) bounds the chunk, and the
evaluation batch is ``--eval-batch-size``, twice the batch, or on CUDA the largest that fits.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from algorithms.engine.chunking import probe_training_step, resolve_chunk
from algorithms.engine.evaluation import auto_eval_batch, evaluation_batch_size
from algorithms.engine.step import TrainingStep
from algorithms.runtime import Runtime
from algorithms.settings import RunConfig
from data.loader import BatchLoader
from data.registry import TargetData


@dataclass
class Loaders:
    train: BatchLoader  # shuffled per (seed, epoch), this rank's share
    stats: BatchLoader  # the training split in order, for no-grad passes (the mapping's statistics)
    test: BatchLoader
    val: BatchLoader | None
    chunk: int  # samples per training forward pass


def build_loaders(
    config: RunConfig, model: torch.nn.Module, step: TrainingStep, data: TargetData, runtime: Runtime, note: Callable[[str], None], info: dict
) -> Loaders:
    """The loaders of a run; what was resolved (``micro_batch``, a probed ``eval_batch_size``) goes into ``info``."""
    batch = data.batch_size
    common = dict(device=runtime.device, seed=config.seed, rank=runtime.rank, world_size=runtime.world_size, resident=config.resident_data)
    train = BatchLoader(data.train, batch, shuffle=True, **common)

    def probe(n: int) -> None:
        probe_training_step(model, step, next(iter(train)), n, runtime)

    chunk = resolve_chunk(config, model, batch, train.shard_size, runtime.device, probe, note)
    eval_batch = evaluation_batch_size(config, batch)
    if isinstance(config.micro_batch, str):  # auto: the probed chunk bounds evaluation too
        eval_batch = min(eval_batch, chunk)
    if config.eval_batch_size is None and config.micro_batch is None:  # on CUDA the largest no-grad batch that fits
        eval_batch = auto_eval_batch(model, train, data, runtime, eval_batch, note, info)
    if config.micro_batch is not None:
        info["micro_batch"] = chunk
    no_grad = dict(shuffle=False, **common)
    val = BatchLoader(data.val, eval_batch, **no_grad) if data.val is not None else None
    return Loaders(train, BatchLoader(data.train, eval_batch, **no_grad), BatchLoader(data.test, eval_batch, **no_grad), val, chunk)
