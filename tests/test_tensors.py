"""data/tensors.py: seeded class-balanced subsets."""
from __future__ import annotations

import torch

from data.tensors import stratified_subset


def test_stratified_subset_is_balanced_seeded_and_sorted():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    idx = stratified_subset(labels, count=30, seed=3)
    assert torch.bincount(labels[idx]).tolist() == [10, 10, 10]
    assert torch.equal(idx, stratified_subset(labels, count=30, seed=3)) and torch.equal(idx, idx.sort().values)
    assert not torch.equal(idx, stratified_subset(labels, count=30, seed=4))
    frac = stratified_subset(labels, fraction=0.5, seed=0)
    assert torch.bincount(labels[frac]).tolist() == [25, 15, 10]
    small = stratified_subset(torch.tensor([0] * 2 + [1] * 40), count=20, seed=0)
    assert torch.bincount(torch.tensor([0] * 2 + [1] * 40)[small]).tolist() == [2, 18]


