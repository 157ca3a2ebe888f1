"""data/loader.py: batches from resident or streamed uint8 sets, shards across ranks, replay by epoch."""
from __future__ import annotations

import pytest
import torch

from data.loader import DEVICE_RESIDENT_BYTES, BatchLoader, fits_on_device, to_float01
from data.tensors import FeatureSet, ImageTensorSet

CPU = torch.device("cpu")


def image_set(n: int = 23) -> ImageTensorSet:
    gen = torch.Generator().manual_seed(0)
    return ImageTensorSet(torch.randint(0, 256, (n, 3, 4, 4), dtype=torch.uint8, generator=gen), torch.arange(n) % 5)


def batches(loader: BatchLoader, epoch: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.set_epoch(epoch)
    return [(x.clone(), y.clone()) for x, y in loader]


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_streamed_loader_yields_the_resident_batches(shuffle, world_size):
    data = image_set()
    for rank in range(world_size):
        kw = dict(shuffle=shuffle, seed=3, rank=rank, world_size=world_size)
        resident = BatchLoader(data, 4, CPU, resident=True, **kw)
        streamed = BatchLoader(data, 4, CPU, resident=False, **kw)
        for epoch in (0, 1):
            a, b = batches(resident, epoch), batches(streamed, epoch)
            assert len(a) == len(b) == len(resident)
            for (xa, ya), (xb, yb) in zip(a, b):
                assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the side copy stream is CUDA's (tools/gpu_check.py runs it too)")
def test_on_cuda_batches_copied_on_the_side_stream_equal_the_resident_ones():
    cuda = torch.device("cuda")
    data = image_set(1000)
    resident = BatchLoader(data, 64, cuda, shuffle=True, seed=3, resident=True)
    streamed = BatchLoader(data, 64, cuda, shuffle=True, seed=3, resident=False)
    for (xa, ya), (xb, yb) in zip(batches(resident), batches(streamed)):
        # a kernel on the consumer's stream right after the hand-over sees the copied batch
        assert xb.device.type == "cuda" and torch.equal(xa.float() * 2, xb.float() * 2) and torch.equal(ya, yb)
    assert streamed._copy_stream is not None and streamed._copy_stream != torch.cuda.current_stream()


def test_shards_cover_the_set_exactly_for_eval_and_evenly_for_training():
    data = image_set(23)
    # evaluation: every sample exactly once over the ranks, no padding
    seen = torch.cat([y for r in range(3) for _, y in batches(BatchLoader(data, 4, CPU, shuffle=False, rank=r, world_size=3))])
    assert len(seen) == 23
    pixels = torch.cat([x for r in range(3) for x, _ in batches(BatchLoader(data, 4, CPU, shuffle=False, rank=r, world_size=3))])
    assert sorted(map(tuple, pixels.flatten(1).tolist())) == sorted(map(tuple, data.images.flatten(1).tolist()))
    # training: equal steps per rank (8 samples each, one repeated), every sample at least once
    shards = [batches(BatchLoader(data, 4, CPU, shuffle=True, seed=1, rank=r, world_size=3)) for r in range(3)]
    assert [sum(len(y) for _, y in s) for s in shards] == [8, 8, 8]
    assert len({len(s) for s in shards}) == 1
    rows = {tuple(x.flatten().tolist()) for s in shards for xb, _ in s for x in xb}
    assert len(rows) == 23


def test_training_order_depends_only_on_seed_and_epoch():
    data = image_set()
    a = BatchLoader(data, 5, CPU, shuffle=True, seed=4)
    b = BatchLoader(data, 5, CPU, shuffle=True, seed=4)
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(batches(a, 2), batches(b, 2)))
    assert not all(torch.equal(x, y) for (x, _), (y, _) in zip(batches(a, 0), batches(b, 1)))


def test_to_float01_is_division_by_255():
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    torch.testing.assert_close(to_float01(x), x.float() / 255.0)


def _set(n: int) -> ImageTensorSet:
    return ImageTensorSet(torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 2, 2).contiguous(), torch.arange(n) % 3)


def test_batch_loader_covers_each_sample_once_and_replays_by_epoch():
    loader = BatchLoader(_set(50), 16, torch.device("cpu"), shuffle=True, seed=1)
    loader.set_epoch(3)
    first = torch.cat([x[:, 0, 0, 0] for x, _ in loader])
    assert sorted(first.tolist()) == list(range(50)) and len(loader) == 4
    loader.set_epoch(3)
    assert torch.equal(first, torch.cat([x[:, 0, 0, 0] for x, _ in loader]))
    loader.set_epoch(4)
    assert not torch.equal(first, torch.cat([x[:, 0, 0, 0] for x, _ in loader]))
    for x, y in loader:
        assert torch.equal(y, x[:, 0, 0, 0].long() % 3)


def test_batch_loader_shards_across_ranks():
    data = _set(11)
    evals = [torch.cat([x[:, 0, 0, 0] for x, _ in BatchLoader(data, 4, torch.device("cpu"), shuffle=False, rank=r, world_size=2)]) for r in range(2)]
    assert sorted(torch.cat(evals).tolist()) == list(range(11))  # evaluation: exact, no padding
    trains = [BatchLoader(data, 4, torch.device("cpu"), shuffle=True, seed=0, rank=r, world_size=2) for r in range(2)]
    seen = [torch.cat([x[:, 0, 0, 0] for x, _ in t]) for t in trains]
    assert len(seen[0]) == len(seen[1]) == 6 and set(torch.cat(seen).tolist()) == set(range(11))


def test_streamed_loader_matches_resident():
    data = _set(40)
    resident = BatchLoader(data, 8, torch.device("cpu"), shuffle=True, seed=5, resident=True)
    streamed = BatchLoader(data, 8, torch.device("cpu"), shuffle=True, seed=5, resident=False)
    for (a, la), (b, lb) in zip(resident, streamed):
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_feature_sets_batch_like_the_images_they_came_from():
    images = _set(40)
    features = FeatureSet(images.images.flatten(1).float() * 0.5, images.labels)
    for resident in (True, False):
        pairs = zip(
            BatchLoader(images, 8, torch.device("cpu"), shuffle=True, seed=5, resident=resident),
            BatchLoader(features, 8, torch.device("cpu"), shuffle=True, seed=5, resident=resident),
            strict=True,
        )
        for (x, y), (f, g) in pairs:
            assert torch.equal(x.flatten(1).float() * 0.5, f) and torch.equal(y, g)
            assert to_float01(f) is f  # precomputed inputs pass through


def test_residency_counts_bytes_and_can_be_forced():
    cuda = torch.device("cuda")
    assert fits_on_device(DEVICE_RESIDENT_BYTES, cuda) and not fits_on_device(DEVICE_RESIDENT_BYTES + 1, cuda)
    assert fits_on_device(10 * DEVICE_RESIDENT_BYTES, torch.device("cpu"))
    assert fits_on_device(10 * DEVICE_RESIDENT_BYTES, cuda, resident=True) and not fits_on_device(1, cuda, resident=False)


def test_to_float01():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8)
    assert torch.allclose(to_float01(x), torch.tensor([0.0, 0.2, 1.0]))
