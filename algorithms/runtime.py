"""Where a run executes, as the engine sees it: device, precision, distributed ranks.

The runner resolves these from the command line (:mod:`runner.devices`); the engine and the
methods only compute with them.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Runtime:
    """Device, precision and process-group facts that every part of a run needs."""

    device: torch.device
    precision: str  # resolved: fp32 | bf16 | fp16 (training, and the network body when evaluating)
    rank: int = 0
    world_size: int = 1
    # evaluation and the mapping's statistics pass: None = as ``precision``; fp32 = no autocast
    # (the command line's default, ``--eval-precision fp32``)
    eval_precision: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self, precision: str | None = None) -> contextlib.AbstractContextManager:
        """Autocast at ``precision`` (default: the run's). Models compute logits and label
        mappings in float32 inside it (:class:`~models.layers.Float32Linear`)."""
        precision = precision or self.precision
        if precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def eval_autocast(self) -> contextlib.AbstractContextManager:
        """Autocast for evaluation and the mapping's statistics pass (``--eval-precision``)."""
        return self.autocast(self.eval_precision or self.precision)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum a tensor over ranks in place (no-op in a single process)."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def synchronize(self) -> None:
        """Wait for queued device work, so that a wall-clock time covers it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


# --compile presets: name -> torch.compile options. "max" autotunes the kernels and captures CUDA
# graphs of each fixed-shape step (inductor's max-autotune mode): a longer first epoch (one capture
# per batch shape: training, its last batch, evaluation), then less launch overhead per step
COMPILE_PRESETS: dict[str, dict] = {"default": {}, "max": {"mode": "max-autotune"}}


def compile_options(value: bool | str) -> dict | None:
    """``--compile``'s value (``config.compile``: True = default, or a preset name) as ``torch.compile``
    keyword arguments; None: eager."""
    if value is False or value is None:
        return None
    return dict(COMPILE_PRESETS["default" if value is True else value])
