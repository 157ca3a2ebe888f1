"""Seeded class-stratified hold-out splits (validation from train, ABIDE's train/test)."""
from __future__ import annotations

import torch

from common.errors import UserError


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into ``(kept, held_out)``, holding out ``fraction`` of every class.

    Each class ``c`` with ``n_c >= 2`` samples gives ``round(fraction * n_c)`` of them, at least one
    and at most ``n_c - 1`` (so every class stays in both parts); a class with a single sample
    stays in the kept part. Which samples are held out depends on ``seed`` alone; both index
    tensors are sorted and disjoint, and together cover every sample.
    """
    if not 0 < fraction < 1:
        raise UserError(f"hold-out fraction must be in (0, 1), got {fraction}")
    labels = torch.as_tensor(labels, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    held = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        n = len(idx)
        if n < 2:
            continue
        count = min(n - 1, max(1, int(round(fraction * n))))
        held.append(idx[torch.randperm(n, generator=gen)[:count]])
    held_idx = torch.sort(torch.cat(held)).values if held else torch.zeros(0, dtype=torch.long)
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[held_idx] = False
    return torch.nonzero(mask).flatten(), held_idx
