"""Output label mappings: from the frozen network's S source logits to the task's K target logits.

Every mapping is a small ``nn.Module`` with one interface, so the engine treats them alike:

* ``forward(source_logits [B, S]) -> target_logits [B, K]``
* ``refresh_due(epoch) -> bool``: whether the engine must gather statistics and call ``fit`` before
  this epoch (ILM: every ``interval`` epochs; FLM: only before the first; RLM: never).
* ``source_statistic(source_logits) -> [B, S]``: each sample's contribution to the statistics
  matrix (one-hot top-1 prediction for the frequency mappings); the engine sums it per target
  class into ``stats [S, K]``, on the device, across ranks.
* ``fit(stats)``: set the mapping from the summed matrix.
* ``describe(source_names, target_names)``: a JSON-ready, human-readable view.

The frequency assignment follows Chen et al. (CVPR 2023), Algorithm 1: repeatedly take the
largest remaining count, pair its source and target, and remove that row and column.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from algorithms.errors import UserError


# ---------------------------------------------------------------------------------------------
# Statistics


def frequency_matrix(source_pred: torch.Tensor, target: torch.Tensor, num_source: int, num_target: int) -> torch.Tensor:
    """``counts[s, t]`` = number of samples of target class ``t`` whose top-1 source class is ``s``.

    One ``bincount`` on the device; target classes absent from the batch simply get a zero column.
    """
    flat = source_pred.long() * num_target + target.long()
    return torch.bincount(flat, minlength=num_source * num_target).view(num_source, num_target)


def top1_one_hot(source_logits: torch.Tensor) -> torch.Tensor:
    """Each sample's vote for its top-1 source class, ``[B, S]`` (ties: lowest index)."""
    votes = torch.zeros_like(source_logits, dtype=torch.float32)
    return votes.scatter_(1, source_logits.argmax(dim=1, keepdim=True), 1.0)


def accumulate_statistic(stats: torch.Tensor, contribution: torch.Tensor, target: torch.Tensor) -> None:
    """``stats[:, t] += sum of contribution[b] over samples b of class t``, in place."""
    stats.index_add_(1, target, contribution.t().to(stats.dtype))


# ---------------------------------------------------------------------------------------------
# Assignments: counts [S, K] -> mapping [K] (source index of every target class)


def greedy_one_to_one(counts: torch.Tensor) -> torch.Tensor:
    """Greedy one-to-one assignment by descending count.

    Ties go to the lowest source index, then the lowest target index (the first maximum in
    row-major order). Once the remaining counts are all zero, the remaining targets take the
    lowest unused sources in increasing target order, by the same rule.
    """
    num_source, num_target = counts.shape
    if num_target > num_source:
        raise UserError(f"cannot map {num_target} target classes one-to-one onto {num_source} source classes")
    work = counts.detach().to("cpu", torch.float64).clone()
    mapping = torch.empty(num_target, dtype=torch.long)
    for _ in range(num_target):
        flat_index = int(torch.argmax(work))  # first occurrence of the maximum = lowest (s, t)
        s, t = divmod(flat_index, num_target)
        mapping[t] = s
        work[s, :] = -1.0
        work[:, t] = -1.0
    return mapping


def hungarian_one_to_one(counts: torch.Tensor) -> torch.Tensor:
    """The one-to-one assignment that maximises the total count (Kuhn-Munkres, via SciPy)."""
    from scipy.optimize import linear_sum_assignment

    num_source, num_target = counts.shape
    if num_target > num_source:
        raise UserError(f"cannot map {num_target} target classes one-to-one onto {num_source} source classes")
    rows, cols = linear_sum_assignment(counts.detach().cpu().double().numpy(), maximize=True)
    mapping = torch.empty(num_target, dtype=torch.long)
    mapping[torch.as_tensor(cols)] = torch.as_tensor(rows, dtype=torch.long)
    return mapping


def random_one_to_one(num_source: int, num_target: int, seed: int) -> torch.Tensor:
    """A seeded random injective mapping (RLM)."""
    if num_target > num_source:
        raise UserError(f"cannot map {num_target} target classes one-to-one onto {num_source} source classes")
    return torch.randperm(num_source, generator=torch.Generator().manual_seed(seed))[:num_target]


# ---------------------------------------------------------------------------------------------
# Mapping modules


class LabelMapping(nn.Module):
    """Interface shared by all output mappings (see the module docstring)."""

    num_source: int
    num_target: int

    def refresh_due(self, epoch: int) -> bool:
        return False

    def source_statistic(self, source_logits: torch.Tensor) -> torch.Tensor:
        return top1_one_hot(source_logits)

    def fit(self, stats: torch.Tensor) -> None:
        raise NotImplementedError(f"{type(self).__name__} is not fitted from statistics")

    def describe(self, source_names: list[str], target_names: list[str]) -> dict:
        return {}

    def changes_since(self, previous: dict[str, torch.Tensor] | None) -> int | None:
        """How many target classes map differently than under ``previous`` (a state dict)."""
        return None


class OneToOneMapping(LabelMapping):
    """Each target class takes the logit of exactly one source class: ``logits[:, mapping]``."""

    def __init__(self, num_source: int, num_target: int, initial: torch.Tensor | None = None) -> None:
        super().__init__()
        self.num_source, self.num_target = num_source, num_target
        if num_target > num_source:
            raise UserError(f"cannot map {num_target} target classes one-to-one onto {num_source} source classes")
        start = torch.arange(num_target) if initial is None else torch.as_tensor(initial, dtype=torch.long)
        self.register_buffer("mapping", start.clone())

    def forward(self, source_logits: torch.Tensor) -> torch.Tensor:
        return source_logits.index_select(1, self.mapping)

    def set_mapping(self, mapping: torch.Tensor) -> None:
        if mapping.shape != (self.num_target,) or len(torch.unique(mapping)) != self.num_target:
            raise ValueError("a one-to-one mapping needs K distinct source indices")
        self.mapping.copy_(mapping.to(self.mapping.device))

    def describe(self, source_names: list[str], target_names: list[str]) -> dict:
        return {target_names[t]: source_names[int(s)] for t, s in enumerate(self.mapping.tolist())}

    def changes_since(self, previous: dict[str, torch.Tensor] | None) -> int | None:
        if previous is None or "mapping" not in previous:
            return None
        return int((previous["mapping"].cpu() != self.mapping.cpu()).sum())


ASSIGNMENTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "greedy": greedy_one_to_one,
    "hungarian": hungarian_one_to_one,
}


class FrequencyMapping(OneToOneMapping):
    """ILM (``interval`` = k: refit before epochs 0, k, 2k, ...) or FLM (``interval`` = None: before epoch 0 only)."""

    def __init__(self, num_source: int, num_target: int, interval: int | None = 1, assignment: str = "greedy") -> None:
        super().__init__(num_source, num_target)
        if interval is not None and interval < 1:
            raise UserError(f"--mapping-interval must be at least 1, got {interval}")
        if assignment not in ASSIGNMENTS:
            raise UserError(f"unknown assignment {assignment!r}; choose from {', '.join(ASSIGNMENTS)}")
        self.interval, self.assignment = interval, assignment

    def refresh_due(self, epoch: int) -> bool:
        return epoch == 0 if self.interval is None else epoch % self.interval == 0

    def fit(self, stats: torch.Tensor) -> None:
        self.set_mapping(ASSIGNMENTS[self.assignment](stats))


class RandomMapping(OneToOneMapping):
    """RLM: a random injective mapping drawn once from the seed and never changed."""

    def __init__(self, num_source: int, num_target: int, seed: int) -> None:
        super().__init__(num_source, num_target, random_one_to_one(num_source, num_target, seed))


class IdentityMapping(LabelMapping):
    """For networks whose head already has the target classes (linear probing, fine-tuning)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_source = self.num_target = num_classes

    def forward(self, source_logits: torch.Tensor) -> torch.Tensor:
        return source_logits


# ---------------------------------------------------------------------------------------------
# Registry: --mapping NAME


def _ilm(num_source: int, num_target: int, interval: int, seed: int) -> LabelMapping:
    return FrequencyMapping(num_source, num_target, interval, "greedy")


def _flm(num_source: int, num_target: int, interval: int, seed: int) -> LabelMapping:
    return FrequencyMapping(num_source, num_target, None, "greedy")


def _rlm(num_source: int, num_target: int, interval: int, seed: int) -> LabelMapping:
    return RandomMapping(num_source, num_target, seed)


def _hungarian(num_source: int, num_target: int, interval: int, seed: int) -> LabelMapping:
    return FrequencyMapping(num_source, num_target, interval, "hungarian")


def _identity(num_source: int, num_target: int, interval: int, seed: int) -> LabelMapping:
    if num_source != num_target:
        raise UserError(f"--mapping identity needs as many source labels as target classes ({num_source} vs {num_target})")
    return IdentityMapping(num_target)


MappingFactory = Callable[[int, int, int, int], LabelMapping]
MAPPINGS: dict[str, MappingFactory] = {"ilm": _ilm, "flm": _flm, "rlm": _rlm, "hungarian": _hungarian, "identity": _identity}


def build_mapping(name: str, num_source: int, num_target: int, *, interval: int = 1, seed: int = 0) -> LabelMapping:
    if name not in MAPPINGS:
        raise UserError(f"unknown mapping {name!r}; choose from {', '.join(sorted(MAPPINGS))}")
    return MAPPINGS[name](num_source, num_target, interval, seed)


import algorithms.probabilistic_mapping  # noqa: E402,F401  (registers blm, blmplus, linear)
