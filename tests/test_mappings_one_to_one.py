"""Label mappings: hand-computed cases, a slow reference for the greedy rule, invariants."""
from __future__ import annotations

import itertools

import pytest
import torch

from algorithms.mappings import (
    FrequencyMapping,
    RandomMapping,
    accumulate_statistic,
    build_mapping,
    frequency_matrix,
    greedy_one_to_one,
    hungarian_one_to_one,
    random_one_to_one,
    top1_one_hot,
)
from common.errors import UserError


def slow_greedy(counts: list[list[int]]) -> list[int]:
    """The paper's rule written the obvious way: largest count first, ties -> lowest source, then target."""
    num_source, num_target = len(counts), len(counts[0])
    used_s, mapping = set(), {}
    while len(mapping) < num_target:
        best = None
        for s in range(num_source):
            for t in range(num_target):
                if s in used_s or t in mapping:
                    continue
                key = (counts[s][t], -s, -t)
                if best is None or key > best[0]:
                    best = (key, s, t)
        _, s, t = best
        mapping[t] = s
        used_s.add(s)
    return [mapping[t] for t in range(num_target)]


def test_frequency_matrix_counts_by_hand():
    pred = torch.tensor([3, 3, 1, 3, 4])
    target = torch.tensor([0, 0, 0, 2, 2])
    counts = frequency_matrix(pred, target, num_source=5, num_target=3)
    expected = torch.zeros(5, 3, dtype=torch.long)
    expected[3, 0], expected[1, 0], expected[3, 2], expected[4, 2] = 2, 1, 1, 1
    assert torch.equal(counts, expected)
    assert counts[:, 1].sum() == 0  # target class 1 absent: a zero column, no error


def test_accumulated_top1_votes_equal_frequency_matrix():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 17, generator=gen)
    target = torch.randint(0, 6, (200,), generator=gen)
    stats = torch.zeros(17, 6)
    for chunk in range(0, 200, 64):  # accumulated batch by batch
        accumulate_statistic(stats, top1_one_hot(logits[chunk : chunk + 64]), target[chunk : chunk + 64])
    assert torch.equal(stats.long(), frequency_matrix(logits.argmax(1), target, 17, 6))


@pytest.mark.parametrize(
    "counts, expected",
    [
        ([[5, 5, 0], [5, 1, 0], [0, 0, 0], [0, 0, 0]], [0, 1, 2]),  # tie on 5: (s0, t0) first
        ([[0, 3], [3, 3], [0, 0]], [1, 0]),  # tie across sources: lowest source wins -> (s0, t1)
        ([[2, 2], [0, 0], [1, 1]], [0, 2]),  # tie across targets: lowest target wins -> (s0, t0)
        ([[0, 0, 0], [0, 0, 0], [0, 0, 0], [2, 0, 1], [0, 0, 1]], [3, 0, 4]),  # empty column -> lowest unused source
        ([[0, 0], [0, 0], [0, 0]], [0, 1]),  # all zero: identity onto the first sources
    ],
)
def test_greedy_by_hand(counts, expected):
    assert greedy_one_to_one(torch.tensor(counts)).tolist() == expected
    assert slow_greedy(counts) == expected


@pytest.mark.parametrize("seed", range(30))
def test_greedy_matches_slow_reference_on_random_counts(seed):
    gen = torch.Generator().manual_seed(seed)
    num_source = int(torch.randint(2, 30, (1,), generator=gen))
    num_target = int(torch.randint(1, num_source + 1, (1,), generator=gen))
    counts = torch.randint(0, 4, (num_source, num_target), generator=gen)  # small range: many ties
    if seed % 3 == 0:
        counts[:, torch.randint(0, num_target, (1,), generator=gen)] = 0  # an absent target class
    mapping = greedy_one_to_one(counts)
    assert mapping.tolist() == slow_greedy(counts.tolist())
    assert len(set(mapping.tolist())) == num_target  # injective


def test_greedy_rejects_more_targets_than_sources():
    with pytest.raises(UserError, match="one-to-one"):
        greedy_one_to_one(torch.zeros(3, 4))


def _total(counts: torch.Tensor, mapping: torch.Tensor) -> int:
    return int(counts[mapping, torch.arange(len(mapping))].sum())


@pytest.mark.parametrize("seed", range(10))
def test_hungarian_is_optimal_and_never_worse_than_greedy(seed):
    gen = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, 10, (6, 4), generator=gen)
    best = max(_total(counts, torch.tensor(p)) for p in itertools.permutations(range(6), 4))
    hungarian = hungarian_one_to_one(counts)
    assert len(set(hungarian.tolist())) == 4
    assert _total(counts, hungarian) == best >= _total(counts, greedy_one_to_one(counts))


def test_greedy_is_not_always_optimal():
    counts = torch.tensor([[10, 9], [9, 0]])  # greedy takes 10 then 0; optimum 9 + 9
    assert _total(counts, greedy_one_to_one(counts)) == 10
    assert _total(counts, hungarian_one_to_one(counts)) == 18


def test_random_mapping_is_seeded_and_injective():
    a, b, c = random_one_to_one(1000, 100, 7), random_one_to_one(1000, 100, 7), random_one_to_one(1000, 100, 8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(set(a.tolist())) == 100 and int(a.max()) < 1000
    rlm = RandomMapping(1000, 100, seed=7)
    assert torch.equal(rlm.mapping, a) and not rlm.refresh_due(0)


def test_one_to_one_forward_selects_mapped_logits():
    mapping = FrequencyMapping(5, 3)
    mapping.set_mapping(torch.tensor([4, 0, 2]))
    logits = torch.arange(10.0).view(2, 5)
    assert mapping(logits).tolist() == [[4.0, 0.0, 2.0], [9.0, 5.0, 7.0]]


def test_refresh_schedules():
    ilm, every3, flm = (build_mapping("ilm", 10, 3, interval=1), build_mapping("ilm", 10, 3, interval=3), build_mapping("flm", 10, 3))
    assert [ilm.refresh_due(e) for e in range(4)] == [True] * 4
    assert [every3.refresh_due(e) for e in range(7)] == [True, False, False, True, False, False, True]
    assert [flm.refresh_due(e) for e in range(3)] == [True, False, False]
    with pytest.raises(UserError):
        build_mapping("ilm", 10, 3, interval=0)
    with pytest.raises(UserError, match="available|choose"):
        build_mapping("nope", 10, 3)


def test_fit_and_changes_count_the_paper_hamming_distance():
    mapping = build_mapping("ilm", 6, 3)
    mapping.fit(torch.tensor([[9, 0, 0], [0, 9, 0], [0, 0, 9], [0, 0, 0], [0, 0, 0], [0, 0, 0]]))
    before = {k: v.clone() for k, v in mapping.state_dict().items()}
    mapping.fit(torch.tensor([[9, 0, 0], [0, 0, 0], [0, 0, 0], [0, 9, 0], [0, 0, 9], [0, 0, 0]]))
    assert mapping.mapping.tolist() == [0, 3, 4]
    assert mapping.changes_since(before) == 2
    names = mapping.describe([f"s{i}" for i in range(6)], ["a", "b", "c"])
    assert names == {"a": "s0", "b": "s3", "c": "s4"}
