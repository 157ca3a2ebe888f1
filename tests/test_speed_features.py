"""The speed features compute what the plain path computes: loaders, counts, precision, allocator."""
from __future__ import annotations

import pytest
import torch

from algorithms.config import build_parser, config_from_args
from algorithms.engine import Trainer
from algorithms.errors import UserError
from algorithms.methods import FAMILIES, get_method
from algorithms.run_dir import RunDir
from algorithms.runtime import Runtime, cpu_supports_bf16, resolve_precision, tune_cpu_allocator
from data.loader import BatchLoader, to_float01
from data.registry import SubsetSpec, load_dataset
from data.tensors import ImageTensorSet
from conftest import tiny_args
from algorithms.cli import main

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


def test_tune_cpu_allocator_is_idempotent():
    first = tune_cpu_allocator()
    assert tune_cpu_allocator() == first
    buffer = torch.ones(64, 1024, 1024)  # large allocations still work afterwards
    assert float(buffer.sum()) == 64 * 1024 * 1024


def test_precision_resolution():
    assert resolve_precision("fp32", CPU) == "fp32"
    assert resolve_precision("auto", CPU) in ("fp32", "bf16")
    with pytest.raises(UserError):
        resolve_precision("fp16", CPU)
    with pytest.raises(UserError):
        resolve_precision("fp64", CPU)


def make_trainer(tmp_path, cifar_root, *extra: str) -> Trainer:
    args = build_parser("ilm_vp", "", get_method("ilm_vp").defaults, None).parse_args(tiny_args(tmp_path, cifar_root, *extra))
    config = config_from_args("ilm_vp", args)
    data = load_dataset("cifar10", cifar_root, batch_size=config.batch_size, subset=SubsetSpec())
    runtime = Runtime(CPU, resolve_precision(config.precision, CPU))
    experiment = FAMILIES["visual_prompt"].build(config, data, runtime)
    return Trainer(config, experiment, data, runtime, RunDir(tmp_path / "run", enabled=False))


def test_lm_source_train_counts_equal_a_pass_when_the_prompt_does_not_move(tmp_path, cifar_root):
    trainer = make_trainer(tmp_path, cifar_root, "--lm-source", "train", "--lr", "0", "--prompt-init", "randn")
    trainer.refresh_mapping(0)
    trainer.train_epoch(0)
    collected = trainer.pending_stats
    assert collected is not None and int(collected.sum()) == 50
    torch.testing.assert_close(collected, trainer.gather_statistics(1), rtol=0, atol=0)


def test_lm_source_train_skips_the_pass_and_uses_the_collected_counts(tmp_path, cifar_root, monkeypatch):
    trainer = make_trainer(tmp_path, cifar_root, "--lm-source", "train")
    trainer.refresh_mapping(0)
    trainer.train_epoch(0)
    monkeypatch.setattr(trainer, "gather_statistics", lambda epoch: pytest.fail("the pass ran"))
    trainer.refresh_mapping(1)
    assert trainer.pending_stats is None


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no bf16")
def test_bf16_run_trains_close_to_fp32(tmp_path, cifar_root):
    import json

    for precision in ("fp32", "bf16"):
        assert main("ilm_vp", tiny_args(tmp_path / precision, cifar_root, "--precision", precision, "--epochs", "1")) == 0
    runs = {p: next((tmp_path / p).rglob("metrics.jsonl")).parent for p in ("fp32", "bf16")}
    rows = {p: json.loads((runs[p] / "metrics.jsonl").read_text()) for p in runs}
    assert json.loads((runs["bf16"] / "config.json").read_text())["resolved"]["precision"] == "bf16"
    assert abs(rows["bf16"]["train_loss"] - rows["fp32"]["train_loss"]) < 0.05
