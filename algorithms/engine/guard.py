"""The numerical guard: a loss that is no longer a number stops the run instead of being trained through.

Each step's loss is checked on the device (no host synchronisation per step); the flag is read
where the loop synchronises anyway (progress updates, the end of the epoch, before any
checkpoint), so the checkpoint on disk is always the last good one. Under fp16 with a loss
scaler, a step whose gradients overflow is skipped by the scaler by design: the guard then
trips only when the scaler skipped every step of an epoch (nothing trains any more) or the
trained parameters themselves are no longer finite.
"""
from __future__ import annotations

import torch

from algorithms.runtime import Runtime
from common.errors import UserError


class NonFiniteLoss(UserError):
    """Training produced a NaN or infinite loss: the run stops, its last good checkpoint stays."""


class NumericalGuard:
    def __init__(self, device: torch.device, scaled: bool) -> None:
        self.device, self.scaled = device, scaled
        self.first_bad = torch.full((), -1, device=device, dtype=torch.long)
        self.bad_value = torch.zeros((), device=device)
        self.skipped = torch.zeros((), device=device, dtype=torch.long)
        self.steps = 0

    def start_epoch(self) -> None:
        self.first_bad.fill_(-1)
        self.skipped.zero_()
        self.steps = 0

    def observe(self, step: int, loss: torch.Tensor) -> None:
        """Record ``loss`` of ``step`` (a device scalar) without synchronising."""
        bad = ~torch.isfinite(loss)
        self.steps += 1
        if self.scaled:
            self.skipped += bad.long()
            return
        first = (self.first_bad < 0) & bad
        self.first_bad = torch.where(first, torch.full_like(self.first_bad, step), self.first_bad)
        self.bad_value = torch.where(first, loss.detach().float(), self.bad_value)

    def check(self, epoch: int, runtime: Runtime, parameters: list[torch.Tensor], cause: str, last_good: str, end_of_epoch: bool = False) -> None:
        """Raise :class:`NonFiniteLoss` (one line: where, the likely cause, the checkpoint kept) if a
        step went bad on any rank; every rank raises together."""
        step = int(self.first_bad)
        elsewhere = runtime.distributed and int(runtime.all_reduce_sum((self.first_bad >= 0).long())) > 0
        if step < 0 and elsewhere:
            raise NonFiniteLoss(f"training loss is not finite on another rank in epoch {epoch + 1}: likely {cause}; the run stopped, {last_good}")
        if step >= 0:
            what = f"training loss is {float(self.bad_value)} at epoch {epoch + 1}, step {step + 1}"
        elif self.scaled and end_of_epoch and self.steps and int(self.skipped) == self.steps:
            what = f"every step of epoch {epoch + 1} overflowed in fp16 (the loss scaler skipped all {self.steps})"
        elif any(not torch.isfinite(p).all() for p in parameters):
            what = f"trained parameters are no longer finite in epoch {epoch + 1}"
        else:
            return
        raise NonFiniteLoss(f"{what}: likely {cause}; the run stopped, {last_good}")


def likely_cause(lr: float, groups: int, precision: str) -> str:
    """What usually makes a loss overflow, in the flags' words."""
    rate = f"--lr {lr:g}" + ("" if groups == 1 else " or a group's own rate, e.g. --mapping-lr")
    return f"a too-large learning rate ({rate})" + (" or fp16 overflow (try --precision bf16 or fp32)" if precision == "fp16" else "")


def checkpoint_kept(location: str, epochs_done: int) -> str:
    """What is left on disk when the guard stops a run."""
    return f"its last good checkpoint {location} (epoch {epochs_done}) is kept" if epochs_done else "no epoch had finished, so no checkpoint was kept"
