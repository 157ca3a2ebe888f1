"""The optimizers and the learning rate per step: warmup, then multistep, cosine or constant.

A run has one optimizer (``--optimizer --lr --weight-decay``, the schedule of ``--scheduler``)
unless a part brings its own: an optimizer group with a ``"recipe"`` (run settings such as
``{"optimizer": "adam", "lr": 0.1, "scheduler": "multistep"}``) goes into an optimizer of its own
with that optimizer and schedule over the same steps (``--mapping head``: linear probing's).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from algorithms.settings import RunConfig
from common.errors import UserError


def build_optimizer(config: RunConfig, groups: list[dict]) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    raise UserError(f"unknown optimizer {config.optimizer!r}; choose adam or sgd")


@dataclass
class Optimization:
    """One optimizer and its per-step schedule, and the settings both follow."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    settings: RunConfig


def build_optimizations(config: RunConfig, groups: list[dict], steps_per_epoch: int) -> list[Optimization]:
    """The run's optimizer over the groups without a ``"recipe"`` (first), then one optimizer per
    distinct recipe over its groups, in the order they appear."""
    plain = [g for g in groups if "recipe" not in g]
    recipes: list[dict] = []
    for group in groups:
        if "recipe" in group and group["recipe"] not in recipes:
            recipes.append(group["recipe"])
    built = []
    for settings, members in [(config, plain)] + [(replace(config, **r), [g for g in groups if g.get("recipe") == r]) for r in recipes]:
        if not members and settings is not config:
            continue
        members = [{k: v for k, v in g.items() if k != "recipe"} for g in members] or [{"params": []}]
        optimizer = build_optimizer(settings, members)
        built.append(Optimization(optimizer, build_scheduler(settings, optimizer, steps_per_epoch), settings))
    return built


def lr_factor(config: RunConfig, steps_per_epoch: int, scheduled: bool = True) -> Callable[[int], float]:
    """Learning-rate multiplier per optimizer step: warmup, then multistep/cosine/constant.

    ``multistep`` decays by ``gamma`` at the epochs ``int(m * epochs)`` (the paper: 50% and 72%),
    exactly as ``MultiStepLR`` stepped once per epoch; ``cosine`` decays per step to zero.
    ``scheduled=False``: warmup, then constant (a group that the schedule leaves alone).
    """
    total = max(1, config.epochs * steps_per_epoch)
    warmup = config.warmup_steps
    milestones = [int(m * config.epochs) for m in config.milestones]
    if config.scheduler not in ("multistep", "cosine", "constant"):
        raise UserError(f"unknown scheduler {config.scheduler!r}; choose multistep, cosine or constant")

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if not scheduled:
            return 1.0
        if config.scheduler == "multistep":
            epoch = step // steps_per_epoch
            return config.gamma ** sum(epoch >= m for m in milestones)
        if config.scheduler == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return factor


def build_scheduler(config: RunConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """One factor per optimizer group; a group with ``"scheduled": False`` keeps its rate after warmup."""
    factors = [lr_factor(config, steps_per_epoch, g.get("scheduled", True)) for g in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)


def schedule_warnings(config: RunConfig) -> list[str]:
    """What the learning-rate schedule does that a user would not expect from the flags.

    With few epochs the multistep milestones ``int(m * epochs)`` can fall on epoch 0 (for
    ``--epochs 1``, both of the paper's), so the run never trains at ``--lr``; the official code
    does the same, silently.
    """
    if config.scheduler != "multistep":
        return []
    at_start = [m for m in config.milestones if int(m * config.epochs) == 0]
    if not at_start:
        return []
    lr = config.lr * config.gamma ** len(at_start)
    return [
        f"with --epochs {config.epochs} the learning-rate milestone{'s' if len(at_start) > 1 else ''} "
        f"{' '.join(f'{m:g}' for m in at_start)} fall{'' if len(at_start) > 1 else 's'} on epoch 0: every step trains at lr {lr:g}, "
        f"not --lr {config.lr:g}; use more epochs, or --scheduler constant for a smoke test"
    ]
