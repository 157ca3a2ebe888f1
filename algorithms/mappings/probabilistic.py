"""Many-to-many output mappings: every source class may contribute to every target class.

* ``blm`` (Bayesian-guided Label Mapping, Cai et al., NeurIPS 2024): from the counts
  ``N[s, t]`` (training samples of target ``t`` whose top-1 source class is ``s``), estimate
  ``P(t | s) = N[s, t] / (sum_t' N[s, t'] + lambda)`` with Laplace smoothing ``lambda = 1``, then
  normalise every target column over the source classes. The result ``omega [S, K]`` is a
  buffer: target logits are ``source_logits @ omega`` and no gradient reaches ``omega``; it is
  refit from the engine's no-grad statistics pass every ``interval`` epochs, like ILM.
* ``blmplus`` (BLM+): the same estimate, but each sample contributes its softmax probabilities on
  its top-k source classes (zero elsewhere) instead of a one-hot vote; ``k = max(1, int(0.15 K))``.
* ``linear`` (AutoVP's fully connected mapping, Tsao et al., ICLR 2024): a trainable
  ``nn.Linear(S, K)`` over the source logits, trained jointly with the prompt. It trains a head,
  so results with it belong on a separate track from the fixed mappings.

Importing this module registers the three names in :data:`algorithms.mappings.base.MAPPINGS`.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from algorithms.mappings.base import LabelMapping, register_mapping
from common.errors import UserError

BLM_LAMBDA = 1.0
BLMPLUS_TOP_FRACTION = 0.15
DESCRIBE_TOP = 5
# BLM's code trains with batch 256, and 64 on DTD and Oxford Pets, for CNN and CLIP alike
BLM_BATCH_SIZE = 256
BLM_SMALL_BATCHES = {"dtd": 64, "oxfordpets": 64}


def blm_batch_size(dataset: str) -> int:
    """BLM's training batch size on ``dataset`` (the default ``--batch-size`` of BLM and BLM+ runs)."""
    return BLM_SMALL_BATCHES.get(dataset, BLM_BATCH_SIZE)


def blm_matrix(counts: torch.Tensor, smoothing: float = BLM_LAMBDA) -> torch.Tensor:
    """``omega [S, K]`` from the (possibly fractional) counts ``[S, K]``.

    ``P(t|s) = N[s,t] / (sum_t' N[s,t'] + smoothing)``; each column is then divided by its sum
    over sources. A source class that was never predicted gets ``P = 0`` (with ``smoothing = 0``
    it would be 0/0). A target column that is all zero (a class with no training samples) becomes
    uniform, so its logit is the mean source logit rather than undefined.
    """
    counts = counts.detach().double()
    if smoothing < 0:
        raise ValueError("smoothing must be non-negative")
    row_totals = counts.sum(dim=1, keepdim=True) + smoothing
    conditional = torch.where(row_totals > 0, counts / row_totals.clamp_min(1e-300), torch.zeros_like(counts))
    column_totals = conditional.sum(dim=0, keepdim=True)
    uniform = torch.full_like(conditional, 1.0 / conditional.shape[0])
    return torch.where(column_totals > 0, conditional / column_totals.clamp_min(1e-300), uniform).float()


def top_k_probabilities(source_logits: torch.Tensor, k: int) -> torch.Tensor:
    """Softmax over the source classes, kept only on each sample's ``k`` largest (ties: lowest index)."""
    probs = torch.softmax(source_logits.float(), dim=1)
    order = torch.sort(probs, dim=1, descending=True, stable=True).indices[:, :k]
    return torch.zeros_like(probs).scatter_(1, order, probs.gather(1, order))


def blmplus_top_k(num_target: int) -> int:
    return max(1, int(BLMPLUS_TOP_FRACTION * num_target))


class BayesianMapping(LabelMapping):
    """BLM / BLM+: ``target_logits = source_logits @ omega`` with ``omega`` refit from statistics."""

    def __init__(self, num_source: int, num_target: int, interval: int | None = 1, top_k: int | None = None) -> None:
        super().__init__()
        if interval is not None and interval < 1:
            raise UserError(f"--mapping-interval must be at least 1, got {interval}")
        if top_k is not None and not 1 <= top_k <= num_source:
            raise UserError(f"top-k must be between 1 and {num_source}, got {top_k}")
        self.num_source, self.num_target = num_source, num_target
        self.interval, self.top_k = interval, top_k
        self.register_buffer("omega", torch.full((num_source, num_target), 1.0 / num_source))

    def forward(self, source_logits: torch.Tensor) -> torch.Tensor:
        return source_logits @ self.omega.to(source_logits.dtype)

    def refresh_due(self, epoch: int) -> bool:
        return epoch == 0 if self.interval is None else epoch % self.interval == 0

    def source_statistic(self, source_logits: torch.Tensor) -> torch.Tensor:
        if self.top_k is None:
            return super().source_statistic(source_logits)  # one-hot top-1 vote
        return top_k_probabilities(source_logits, self.top_k)

    def fit(self, stats: torch.Tensor) -> None:
        if stats.shape != self.omega.shape:
            raise ValueError(f"statistics must be {tuple(self.omega.shape)}, got {tuple(stats.shape)}")
        self.omega.copy_(blm_matrix(stats).to(self.omega.device))

    def describe(self, source_names: list[str], target_names: list[str]) -> dict:
        """Per target class: its ``DESCRIBE_TOP`` heaviest source classes and their weights."""
        top = min(DESCRIBE_TOP, self.num_source)
        weights, indices = torch.sort(self.omega.detach().cpu(), dim=0, descending=True, stable=True)
        return {
            target_names[t]: [
                {"source": source_names[int(indices[i, t])], "index": int(indices[i, t]), "weight": round(float(weights[i, t]), 6)}
                for i in range(top)
            ]
            for t in range(self.num_target)
        }

    def changes_since(self, previous: dict[str, torch.Tensor] | None) -> int | None:
        """How many target classes have a different heaviest source class than under ``previous``."""
        if previous is None or "omega" not in previous:
            return None
        return int((previous["omega"].cpu().argmax(dim=0) != self.omega.cpu().argmax(dim=0)).sum())


class LinearMapping(LabelMapping):
    """A trainable fully connected layer from the source logits to the target logits."""

    def __init__(self, num_source: int, num_target: int) -> None:
        super().__init__()
        self.num_source, self.num_target = num_source, num_target
        self.linear = nn.Linear(num_source, num_target)

    def forward(self, source_logits: torch.Tensor) -> torch.Tensor:
        return self.linear(source_logits)

    def describe(self, source_names: list[str], target_names: list[str]) -> dict:
        """Per target class: the source classes with the largest weights (the layer itself is in the checkpoint)."""
        top = min(DESCRIBE_TOP, self.num_source)
        weights, indices = torch.sort(self.linear.weight.detach().cpu(), dim=1, descending=True, stable=True)
        return {
            target_names[t]: [
                {"source": source_names[int(indices[t, i])], "index": int(indices[t, i]), "weight": round(float(weights[t, i]), 6)}
                for i in range(top)
            ]
            for t in range(self.num_target)
        }


@register_mapping(
    "blm",
    "BLM (Cai et al., NeurIPS 2024): Bayesian-guided probabilistic mapping from top-1 counts, refit every --mapping-interval epochs",
    batch_size=blm_batch_size,
)
def _blm(num_source: int, num_target: int, interval: int, seed: int) -> LabelMapping:
    return BayesianMapping(num_source, num_target, interval)


@register_mapping("blmplus", "BLM+: BLM from each sample's top-k softmax probabilities instead of its top-1 vote", batch_size=blm_batch_size)
def _blmplus(num_source: int, num_target: int, interval: int, seed: int) -> LabelMapping:
    return BayesianMapping(num_source, num_target, interval, top_k=min(num_source, blmplus_top_k(num_target)))


@register_mapping("linear", "a trainable linear layer over the source logits (AutoVP's fully connected mapping), learning rate --mapping-lr")
def _linear(num_source: int, num_target: int, interval: int, seed: int) -> LabelMapping:
    with torch.random.fork_rng(devices=[]):  # the default init's draws are replaced below
        mapping = LinearMapping(num_source, num_target)
    seeded_linear_init(mapping.linear, torch.Generator().manual_seed(seed))
    return mapping


def seeded_linear_init(layer: nn.Linear, generator: torch.Generator) -> None:
    """``nn.Linear``'s default initialisation drawn from ``generator``: the layer's initial weights
    depend on --seed only, not on what the global random state (or a CUDA one) has been used for."""
    fan_in = layer.weight.shape[1]
    with torch.no_grad():
        nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        layer.bias.uniform_(-bound, bound, generator=generator)

