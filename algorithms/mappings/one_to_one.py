"""One-to-one label mappings: each target class reads the logit of one source class.

* ``ilm`` / ``flm``: the frequency assignment of Chen et al. (CVPR 2023), Algorithm 1 (repeatedly
  take the largest remaining count, pair its source and target, remove that row and column),
  refit every ``interval`` epochs (ILM) or once before training (FLM).
* ``hungarian``: the one-to-one assignment that maximises the total count.
* ``rlm``: a seeded random injective mapping, never refit.
* ``identity``: for networks whose head already has the target classes.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from algorithms.mappings.base import LabelMapping, register_mapping
from common.errors import UserError

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
# Registered names: --mapping NAME


@register_mapping("ilm", "ILM (Chen et al., CVPR 2023): greedy one-to-one from top-1 prediction counts, refit every --mapping-interval epochs")
def _ilm(num_source: int, num_target: int, interval: int, seed: int) -> LabelMapping:
    return FrequencyMapping(num_source, num_target, interval, "greedy")


@register_mapping("flm", "FLM: the same greedy one-to-one mapping, fitted once before training")
def _flm(num_source: int, num_target: int, interval: int, seed: int) -> LabelMapping:
    return FrequencyMapping(num_source, num_target, None, "greedy")


@register_mapping("rlm", "RLM: a seeded random one-to-one mapping, never refit")
def _rlm(num_source: int, num_target: int, interval: int, seed: int) -> LabelMapping:
    return RandomMapping(num_source, num_target, seed)


@register_mapping("hungarian", "one-to-one maximising the total count (Kuhn-Munkres), refit every --mapping-interval epochs")
def _hungarian(num_source: int, num_target: int, interval: int, seed: int) -> LabelMapping:
    return FrequencyMapping(num_source, num_target, interval, "hungarian")


@register_mapping("identity", "target class k reads source logit k (a new K-way head, or CLIP with one template)")
def _identity(num_source: int, num_target: int, interval: int, seed: int) -> LabelMapping:
    if num_source != num_target:
        raise UserError(f"--mapping identity needs as many source labels as target classes ({num_source} vs {num_target})")
    return IdentityMapping(num_target)
