"""``--micro-batch`` resolved to the most samples one training forward pass takes.

A number is checked against what the model's batch statistics allow; ``auto`` probes the device
(:mod:`algorithms.micro_batching`). Resolution happens once, before the first epoch, and the
result is recorded in ``results.json`` (``micro_batch``).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from algorithms import micro_batching
from algorithms.engine.step import TrainingStep
from algorithms.runtime import Runtime
from algorithms.settings import RunConfig
from common.errors import UserError
from data.loader import to_float01

# (n) -> None: one training forward and backward pass on n samples that leaves no trace
ProbeStep = Callable[[int], None]


def resolve_chunk(
    config: RunConfig, model: torch.nn.Module, batch: int, shard_size: int, device: torch.device, probe_step: ProbeStep, note: Callable[[str], None]
) -> int:
    """Samples per training forward pass for batches of ``batch``: ``batch`` itself unless
    ``--micro-batch`` says otherwise; ``note`` tells the user what a chunked run means."""
    requested = config.micro_batch
    if requested is None:
        return batch
    if requested == "auto":
        model.train()
        if config.batch_dependent or micro_batching.batch_statistics_modules(model):
            raise UserError(
                f"--micro-batch auto would make {config.method}'s result depend on the device's memory"
                " (what it trains depends on how a batch is split); give a number"
            )
        memory = micro_batching.memory_signal(device)
        if memory is None:
            note(f"--micro-batch auto: no memory probe on {device.type}; each batch of {batch} runs whole")
            return batch
        chunk = micro_batching.largest_fitting_chunk(min(batch, shard_size), micro_batching.probe_fits(probe_step, memory))
        note(f"--micro-batch auto: chunks of {chunk} for batches of {batch} (largest that fits on {device}, probed)")
        return chunk
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
        raise UserError(f"--micro-batch must be a positive number of samples or auto, got {requested!r}")
    if requested < batch:
        check_batch_statistics(config, model, requested, batch, note)
    return requested


def check_batch_statistics(config: RunConfig, model: torch.nn.Module, chunk: int, batch: int, note: Callable[[str], None]) -> None:
    """Chunks change what batch statistics see: allowed only where the method declares it."""
    model.train()
    found = micro_batching.batch_statistics_modules(model)
    if config.batch_dependent:
        note(
            f"--micro-batch {chunk}: what {config.method} trains depends on how a batch is split"
            f"{' (batch norms in training mode)' if found else ''}, so chunks of {chunk} give another result"
            f" than batches of {batch}; --micro-batch is part of this run's settings"
        )
    elif found:
        raise UserError(
            f"--micro-batch {chunk} would change this model's result: {', '.join(found[:3])} normalise over the batch in"
            f" training mode, and its method does not declare that (register_family(batch_dependent=...))"
        )


def probe_training_step(model: torch.nn.Module, step: TrainingStep, batch: tuple[torch.Tensor, torch.Tensor], n: int, runtime: Runtime) -> None:
    """One training forward and backward pass on the first ``n`` samples of ``batch``, leaving no
    trace (random state and gradients as before): what the auto probe measures."""
    images, labels = batch
    model.train()
    devices = [runtime.device] if runtime.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            with runtime.autocast():
                out = step.forward(model, to_float01(images[:n]), labels[:n])
            out.loss.backward()
    finally:
        model.zero_grad(set_to_none=True)
