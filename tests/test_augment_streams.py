"""Per-sample augmentation streams: a sample's view depends on (seed, epoch, its dataset index) alone,
so ranks reproduce the one-process run (data/augment_draws.py, BatchLoader.batch_indices)."""
from __future__ import annotations

import pytest
import torch

from common.seeding import counter_uniforms, sample_keys, splitmix64
from data.augment_draws import AugmentDraws, randint_from
from data.augment_recipes import RECIPES, build_recipe
from data.loader import BatchLoader, to_float01
from data.tensors import ImageTensorSet

MASK = 2**64 - 1


def splitmix64_reference(x: int) -> int:
    """SplitMix64 on Python integers (Steele, Lea & Flood 2014): the bits the int64 version must give."""
    z = (x + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def as_unsigned(t: torch.Tensor) -> list[int]:
    return [v & MASK for v in t.tolist()]


def test_splitmix64_on_int64_tensors_matches_the_unsigned_reference():
    xs = [0, 1, 2, 7, 12345, 2**62 + 3, -1, -(2**63)]
    assert as_unsigned(splitmix64(torch.tensor(xs, dtype=torch.int64))) == [splitmix64_reference(x & MASK) for x in xs]
    # the published first output of SplitMix64 seeded with 0 (state += golden ratio, then the finaliser)
    assert splitmix64_reference(0) == 0xE220A8397B1DCDAF


def test_sample_keys_and_uniforms_follow_the_formula():
    seed, epoch, idx = 7, 3, [0, 1, 49999]
    base = splitmix64_reference(splitmix64_reference(seed) ^ epoch)
    keys = [splitmix64_reference(base ^ i) for i in idx]
    got = sample_keys(seed, epoch, torch.tensor(idx))
    assert as_unsigned(got) == keys
    u = counter_uniforms(got, 5, 2)
    for b, key in enumerate(keys):
        for j, counter in enumerate((5, 6)):
            z = splitmix64_reference((splitmix64_reference(key ^ counter) + key) & MASK)
            assert u[b, j].item() == (z >> 11) * 2.0**-53


def test_uniforms_are_uniform_and_distinct_across_samples_epochs_and_seeds():
    u = AugmentDraws(7, 0, torch.arange(20000)).uniform(4)
    assert u.min() >= 0 and u.max() < 1
    torch.testing.assert_close(u.mean(0), torch.full((4,), 0.5, dtype=torch.float64), atol=0.01, rtol=0)
    hist = torch.histc(u[:, 0].float(), bins=10, min=0, max=1) / len(u)
    assert (hist - 0.1).abs().max() < 0.01
    assert abs(torch.corrcoef(u.T)[0, 1]) < 0.03  # successive draws of a stream uncorrelated
    other_epoch, other_seed = AugmentDraws(7, 1, torch.arange(20000)).uniform(4), AugmentDraws(8, 0, torch.arange(20000)).uniform(4)
    assert (u != other_epoch).all() and (u != other_seed).all()
    assert len(set(sample_keys(7, 0, torch.arange(20000)).tolist())) == 20000


def test_randint_from_covers_every_value_and_never_exceeds():
    u = torch.tensor([0.0, 0.2, 0.5, 0.99999999, 1.0 - 2**-53])
    assert randint_from(u, 3).tolist() == [0, 0, 1, 2, 2]
    assert randint_from(u, torch.tensor([1, 1, 1, 1, 1])).tolist() == [0] * 5


def test_a_streams_draws_continue_across_steps():
    draws = AugmentDraws.first(5, seed=2)
    both = AugmentDraws.first(5, seed=2).uniform(5)
    assert torch.equal(torch.cat([draws.uniform(2), draws.uniform(3)], 1), both)


STEPS = sorted(name for name, recipe in RECIPES.items() if recipe.build is not None)


@pytest.mark.parametrize("recipe", [*STEPS, "trivialaugment_wide+pad_crop_flip", "resize32_crop_flip+trivialaugment_wide"])
def test_a_samples_view_depends_on_its_index_not_its_batch(recipe):
    """The same sample in another batch, at another position, with other neighbours: the same view."""
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    augment = build_recipe(recipe, (16, 16), 24)
    whole = augment(x, AugmentDraws(7, 2, torch.tensor([10, 11, 12, 13, 14, 15])))
    part = augment(x[[4, 1, 3]], AugmentDraws(7, 2, torch.tensor([14, 11, 13])))
    assert torch.equal(part, whole[[4, 1, 3]])
    again = augment(x, AugmentDraws(7, 3, torch.tensor([10, 11, 12, 13, 14, 15])))  # next epoch: new views
    assert not torch.equal(again, whole)


def views(loader: BatchLoader, recipe: str, seed: int, epoch: int) -> list[dict[int, torch.Tensor]]:
    """Per training step: dataset index -> the augmented image, as the engine draws them."""
    augment = build_recipe(recipe, (16, 16), 24)
    loader.set_epoch(epoch)
    steps = []
    for step, (images, _labels) in enumerate(loader):
        indices = loader.batch_indices(step)
        out = augment(to_float01(images), AugmentDraws(seed, epoch, indices))
        steps.append({int(i): out[b] for b, i in enumerate(indices.tolist())})
    return steps


@pytest.mark.parametrize("recipe", ["resize32_crop_flip", "random_resized_crop_flip", "trivialaugment_wide+pad_crop_flip"])
def test_two_ranks_see_exactly_the_one_process_augmented_images(recipe):
    """SMM's mask network and full fine-tuning normalise over the batch, so 2 ranks train on
    per-rank batch statistics; what they see is still the one-process set, step by step."""
    n = 22  # 2 ranks x 4 per step == 1 process x 8 per step; 22 = 2 x 11 needs no padding
    data = ImageTensorSet(torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)), torch.arange(n) % 3)
    for epoch in (0, 1):
        one = views(BatchLoader(data, 8, torch.device("cpu"), shuffle=True, seed=5), recipe, 5, epoch)
        ranks = [views(BatchLoader(data, 4, torch.device("cpu"), shuffle=True, seed=5, rank=r, world_size=2), recipe, 5, epoch) for r in (0, 1)]
        assert len(one) == len(ranks[0]) == len(ranks[1]) == 3
        for step, single in enumerate(one):
            union = {**ranks[0][step], **ranks[1][step]}
            assert set(union) == set(single) and len(ranks[0][step]) + len(ranks[1][step]) == len(single)
            for index, image in single.items():
                assert torch.equal(union[index], image), (epoch, step, index)


def test_batch_indices_are_the_loaders_order():
    n = 13
    data = ImageTensorSet(torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 2, 2).contiguous(), torch.arange(n))
    for world, rank in ((1, 0), (2, 1)):
        loader = BatchLoader(data, 4, torch.device("cpu"), shuffle=True, seed=3, rank=rank, world_size=world)
        loader.set_epoch(2)
        for step, (_images, labels) in enumerate(loader):
            assert torch.equal(loader.batch_indices(step), labels)  # label i is sample i here
