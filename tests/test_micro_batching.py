"""--micro-batch: a training step in chunks equals the whole batch's; the auto probe; batch-dependent methods."""
from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import tiny_args, write_cifar10_pickles
from mapping_passes import accuracy_and_test_counts, gather_statistics, mapping_refit, refresh_mapping
from torch import nn

from algorithms import micro_batching
from algorithms.engine import Experiment, Trainer
from algorithms.mappings import build_mapping
from algorithms.methods import FAMILIES, get_method
from algorithms.runtime import Runtime
from common.errors import UserError
from data.registry import SubsetSpec, load_dataset
from runner.cli import main
from runner.config import build_parser, config_from_args
from runner.run_dir import RunDir

CPU = torch.device("cpu")


@pytest.fixture
def root64(tmp_path):
    """Tiny CIFAR-10 pickles with 65 training images (64 kept by --max-train-samples 64) and 20 test."""
    write_cifar10_pickles(tmp_path / "data", per_batch=13)
    return tmp_path / "data"


def config_for(tmp_path, data_root, method: str, *extra: str):
    parser = build_parser(method)
    return config_from_args(method, parser.parse_args(tiny_args(tmp_path, data_root, *extra)))


def make_trainer(tmp_path, data_root, *extra: str, method: str = "ilm_vp", runtime: Runtime | None = None) -> Trainer:
    config = config_for(tmp_path, data_root, method, *extra)
    runtime = runtime or Runtime(CPU, "fp32")
    subset = SubsetSpec(config.max_train_samples, config.max_test_samples)
    data = load_dataset("cifar10", data_root, batch_size=config.batch_size, subset=subset)
    experiment = FAMILIES[get_method(method).family].build(config, data, runtime)
    return Trainer(config, experiment, data, runtime, RunDir(tmp_path / "run", enabled=False))


STEP = ("--max-train-samples", "64", "--batch-size", "64", "--optimizer", "sgd", "--momentum", "0", "--lr", "100",
        "--lm-source", "train", "--epochs", "2")  # fmt: skip


def test_one_step_in_chunks_gives_the_whole_batch_prompt_loss_and_counts(tmp_path, root64):
    # plain SGD from theta = 0: the prompt after the step is -lr * gradient, so a wrongly weighted chunk
    # would show (Adam's first step, about lr * sign(gradient), would hide it)
    runs = {}
    for name, extra in (("whole", ()), ("chunks", ("--micro-batch", "16"))):
        trainer = make_trainer(tmp_path / name, root64, *STEP, *extra)
        assert len(trainer.train_loader) == 1 and trainer.data.sizes()["train"] == 64
        before = trainer.model.input_transform.theta.detach().clone()
        refresh_mapping(trainer, 0)
        metrics = trainer.train_epoch(0)
        runs[name] = (trainer.model.input_transform.theta.detach() - before, metrics, mapping_refit(trainer).pending, trainer.chunk)
    (step_w, m_w, stats_w, chunk_w), (step_c, m_c, stats_c, chunk_c) = runs["whole"], runs["chunks"]
    assert chunk_w == 64 and chunk_c == 16
    assert step_w.abs().max() > 1e-3  # the prompt moved
    torch.testing.assert_close(step_c, step_w, rtol=1e-5, atol=1e-7)
    assert m_c["train_loss"] == pytest.approx(m_w["train_loss"], rel=1e-6)
    assert m_c["train_acc"] == m_w["train_acc"] and m_c["train_samples"] == m_w["train_samples"] == 64
    assert int(stats_w.sum()) == 64 and torch.equal(stats_c, stats_w)  # --lm-source train counts


def test_chunk_losses_are_weighted_by_their_real_sizes(tmp_path, root64):
    # batch 64 in chunks of 24: 24 + 24 + 16, the last one smaller
    steps = {}
    for name, extra in (("whole", ()), ("uneven", ("--micro-batch", "24"))):
        trainer = make_trainer(tmp_path / name, root64, *STEP, *extra)
        before = trainer.model.input_transform.theta.detach().clone()
        refresh_mapping(trainer, 0)
        trainer.train_epoch(0)
        steps[name] = trainer.model.input_transform.theta.detach() - before
    torch.testing.assert_close(steps["uneven"], steps["whole"], rtol=1e-5, atol=1e-7)


def test_mapping_pass_and_evaluation_counts_are_identical_in_chunks(tmp_path, cifar_root):
    counts = {}
    for name, extra in (("whole", ()), ("chunks", ("--micro-batch", "3"))):
        trainer = make_trainer(tmp_path / name, cifar_root, "--prompt-init", "randn", *extra)
        assert trainer.test_loader.batch_size == (32 if name == "whole" else 3)  # eval batch bounded by the chunk
        acc, test_counts = accuracy_and_test_counts(trainer)
        counts[name] = (gather_statistics(trainer, 0), test_counts, acc)
    for a, b in zip(counts["whole"], counts["chunks"]):
        assert a == b if isinstance(a, float) else torch.equal(a, b)


@pytest.mark.slow
def test_a_short_run_in_chunks_matches_the_whole_batch_run(tmp_path, cifar_root):
    folders = {}
    for name, extra in (("whole", ()), ("chunks", ("--micro-batch", "5"))):
        assert main("ilm_vp", tiny_args(tmp_path / name, cifar_root, "--epochs", "3", "--prompt-init", "randn", *extra)) == 0
        (folders[name],) = [p.parent for p in (tmp_path / name).rglob("config.json")]
    assert folders["whole"].name == folders["chunks"].name  # an execution setting: the same run folder name
    rows = {n: [json.loads(line) for line in (f / "metrics.jsonl").read_text().splitlines()] for n, f in folders.items()}
    for a, b in zip(rows["whole"], rows["chunks"]):
        assert abs(a["test_acc"] - b["test_acc"]) <= 100 / 20 + 1e-9  # at most one of the 20 test images
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)
    for epoch in ("epoch_001.json", "epoch_002.json", "epoch_003.json"):
        mappings = [json.loads((f / "mappings" / epoch).read_text()) for f in folders.values()]
        assert mappings[0] == mappings[1]
    config = json.loads((folders["chunks"] / "config.json").read_text())
    assert config["config"]["micro_batch"] == 5 and config["resolved"]["micro_batch"] == 5


def test_under_ddp_gradients_are_reduced_once_per_step(tmp_path, cifar_root):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}", rank=0, world_size=1)
    try:
        # a group of one process behind a runtime that says two: the trainer wraps the model in DDP
        trainer = make_trainer(tmp_path, cifar_root, "--micro-batch", "3", runtime=Runtime(CPU, "fp32", rank=0, world_size=2))
        ddp = trainer.train_model
        assert isinstance(ddp, nn.parallel.DistributedDataParallel)
        reductions = []

        def counting_hook(state, bucket):
            reductions.append(bucket.index())
            future = torch.futures.Future()
            future.set_result(bucket.buffer())
            return future

        ddp.register_comm_hook(None, counting_hook)
        refresh_mapping(trainer, 0)
        trainer.train_epoch(0)
        steps = len(trainer.train_loader)  # 25 samples on this rank: 16 + 9, in chunks of 3
        assert steps == 2 and len(reductions) == steps  # not once per chunk (9 chunks)
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------
# --micro-batch auto


def threshold_fits(limit: int, tried: list[int]):
    def fits(n: int) -> bool:
        tried.append(n)
        return n <= limit

    return fits


def test_chunk_sizes_split_a_batch_evenly():
    assert micro_batching.chunk_sizes(10) == [10, 5, 4, 3, 2, 1]
    for b in (1, 7, 128, 250):
        for size in micro_batching.chunk_sizes(b):
            k = math.ceil(b / size)
            assert size * (k - 1) < b <= size * k  # k chunks, none empty


@pytest.mark.parametrize("limit", [1, 2, 5, 31, 42, 43, 63, 64, 127, 128, 500])
def test_largest_fitting_chunk_finds_the_largest_even_split_by_bisection(limit):
    tried: list[int] = []
    got = micro_batching.largest_fitting_chunk(128, threshold_fits(limit, tried))
    assert got == max(s for s in micro_batching.chunk_sizes(128) if s <= limit)
    assert len(tried) <= 2 + math.ceil(math.log2(len(micro_batching.chunk_sizes(128))))
    if limit >= 128:
        assert tried == [128]  # a batch that fits costs one probe


def test_largest_fitting_chunk_fails_clearly_when_nothing_fits():
    with pytest.raises(UserError, match="not even one sample"):
        micro_batching.largest_fitting_chunk(16, lambda n: False)


class FakeMemory:
    """A memory signal whose peak is ``per_sample`` per sample of the last step, against ``budget``."""

    def __init__(self, per_sample: int, budget: int) -> None:
        self.per_sample, self.budget, self.samples, self.starts = per_sample, budget, 0, 0

    def start(self) -> None:
        self.starts += 1
        self.samples = 0

    def within_budget(self) -> bool:
        return self.samples * self.per_sample <= self.budget


def test_probe_counts_out_of_memory_and_over_budget_as_not_fitting():
    memory = FakeMemory(per_sample=10, budget=200)

    def step(n: int) -> None:
        if n > 30:
            raise torch.OutOfMemoryError("fake: CUDA out of memory")
        memory.samples = n

    fits = micro_batching.probe_fits(step, memory)
    assert [fits(n) for n in (40, 30, 21, 20, 1)] == [False, False, False, True, True]
    assert memory.starts == 5
    with pytest.raises(ValueError):  # any other failure is not a memory signal
        micro_batching.probe_fits(lambda n: int("x"), memory)(1)


def test_auto_probes_real_training_steps_and_leaves_no_trace(tmp_path, cifar_root, monkeypatch, capsys):
    """The engine's probe on CPU with a fake device: steps over 6 samples run out of memory."""
    memory = FakeMemory(per_sample=1, budget=10**9)
    monkeypatch.setattr(micro_batching, "memory_signal", lambda device: memory)
    seen: list[int] = []
    original = nn.Conv2d.forward

    def conv_forward(self, x):
        seen.append(x.shape[0])
        if x.shape[0] > 6 and torch.is_grad_enabled():
            raise torch.OutOfMemoryError("fake: CUDA out of memory")
        memory.samples = max(memory.samples, x.shape[0])
        return original(self, x)

    monkeypatch.setattr(nn.Conv2d, "forward", conv_forward)
    rng_before = torch.random.get_rng_state()
    reference = make_trainer(tmp_path / "ref", cifar_root, "--prompt-init", "randn")
    theta, rng_reference = reference.model.input_transform.theta.detach().clone(), torch.random.get_rng_state()
    torch.random.set_rng_state(rng_before)
    seen.clear()
    trainer = make_trainer(tmp_path / "auto", cifar_root, "--prompt-init", "randn", "--micro-batch", "auto")
    assert trainer.chunk == 6  # batch 16: 16, 8 fail; ceil(16/3) = 6 fits
    assert 16 in seen and 6 in seen
    assert "--micro-batch auto: chunks of 6 for batches of 16" in capsys.readouterr().out
    assert trainer.test_loader.batch_size == trainer.stats_loader.batch_size == 6  # with --micro-batch: bounded by the chunk
    assert torch.equal(trainer.model.input_transform.theta.detach(), theta)
    assert all(p.grad is None for p in trainer.model.parameters())
    assert torch.equal(torch.random.get_rng_state(), rng_reference)  # the probe drew nothing from the run's stream
    refresh_mapping(trainer, 0)
    trainer.train_epoch(0)  # trains in chunks of 6 without running out of memory


# ---------------------------------------------------------------------------------------------
# The no-grad passes at any batch (--eval-batch-size, issue 23)


@pytest.mark.parametrize("limit", [1, 3, 32, 33, 64, 100, 500, 4096])
def test_largest_eval_batch_doubles_up_to_the_limit_and_halves_below_the_start(limit):
    tried: list[int] = []
    got = micro_batching.largest_eval_batch(32, 1000, threshold_fits(limit, tried))
    candidates = [32 * 2**k for k in range(5)] + [1000] if limit >= 32 else [32 >> k for k in range(6)]
    assert got == max(c for c in candidates if c <= limit)
    assert len(tried) <= 7
    assert micro_batching.largest_eval_batch(32, 20, threshold_fits(limit, [])) == (20 if limit >= 20 else got)


def test_largest_eval_batch_fails_clearly_when_nothing_fits():
    with pytest.raises(UserError, match="--eval-batch-size auto: not even one sample"):
        micro_batching.largest_eval_batch(16, 100, lambda n: False)


def test_mapping_statistics_and_test_counts_do_not_depend_on_the_eval_batch(tmp_path, cifar_root):
    """Batch 7 (uneven last batch) against 500 (one batch): the no-grad passes give the same counts."""
    counts = {}
    for size in ("7", "500"):
        trainer = make_trainer(tmp_path / size, cifar_root, "--prompt-init", "randn", "--eval-batch-size", size)
        assert trainer.test_loader.batch_size == int(size)
        acc, test_counts = accuracy_and_test_counts(trainer)
        counts[size] = (gather_statistics(trainer, 0), test_counts, acc)
    assert counts["7"][2] == counts["500"][2]
    for a, b in zip(counts["7"][:2], counts["500"][:2]):
        assert int(a.sum()) in (50, 20) and torch.equal(a, b)


@pytest.mark.slow
def test_a_run_with_the_automatic_eval_batch_matches_batch_7(tmp_path, cifar_root, monkeypatch, capsys):
    """The auto probe on CPU with a fake device (40 samples fit): same mappings and accuracies as batch 7."""
    assert main("ilm_vp", tiny_args(tmp_path / "seven", cifar_root, "--prompt-init", "randn", "--eval-batch-size", "7")) == 0
    monkeypatch.setattr(micro_batching, "memory_signal", lambda device: FakeMemory(per_sample=1, budget=10**9))
    original = nn.Conv2d.forward

    def conv_forward(self, x):
        if x.shape[0] > 40:
            raise torch.OutOfMemoryError("fake: CUDA out of memory")
        return original(self, x)

    monkeypatch.setattr(nn.Conv2d, "forward", conv_forward)
    assert main("ilm_vp", tiny_args(tmp_path / "auto", cifar_root, "--prompt-init", "randn")) == 0
    assert "--eval-batch-size auto: 32 on cpu" in capsys.readouterr().out  # 32 fits, 50 (the limit) does not
    (seven,), (auto,) = ([p.parent for p in (tmp_path / n).rglob("config.json")] for n in ("seven", "auto"))
    rows = {n: [json.loads(line) for line in (f / "metrics.jsonl").read_text().splitlines()] for n, f in (("7", seven), ("auto", auto))}
    for a, b in zip(rows["7"], rows["auto"]):
        assert a["test_acc"] == b["test_acc"] and a["train_loss"] == b["train_loss"] and a["mapping_changes"] == b["mapping_changes"]
    for epoch in ("epoch_001.json", "epoch_002.json"):
        assert json.loads((seven / "mappings" / epoch).read_text()) == json.loads((auto / "mappings" / epoch).read_text())
    assert json.loads((auto / "results.json").read_text())["eval_batch_size"] == 32


def test_auto_on_cpu_runs_the_whole_batch_with_a_note(tmp_path, cifar_root, capsys):
    trainer = make_trainer(tmp_path, cifar_root, "--micro-batch", "auto")
    assert trainer.chunk == 16
    assert "--micro-batch auto: no memory probe on cpu; each batch of 16 runs whole" in capsys.readouterr().out


def test_bad_micro_batch_values_are_one_line_errors(tmp_path, cifar_root, capsys):
    for value in ("0", "-3", "many"):
        assert main("ilm_vp", tiny_args(tmp_path, cifar_root, "--micro-batch", value)) == 2
        assert "argument --micro-batch: expected a positive number of samples or auto" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Methods whose trained part depends on the batch


def test_micro_batch_is_part_of_the_identity_only_where_it_changes_the_result(tmp_path, cifar_root):
    def hashes(method: str, *extra: str) -> tuple[str, str]:
        plain = config_for(tmp_path, cifar_root, method, *extra)
        chunked = config_for(tmp_path, cifar_root, method, *extra, "--micro-batch", "4")
        return plain.config_hash(), chunked.config_hash()

    for method in ("ilm_vp", "flm_vp", "linear_probing"):
        a, b = hashes(method)
        assert a == b, method
    a, b = hashes("full_finetune")
    assert a != b
    a, b = hashes("ilm_vp", "--recompute")
    assert a == b and a == hashes("ilm_vp")[0]  # --recompute changes nothing computed either


def test_clip_random_patch_is_batch_dependent_and_padding_is_not():
    from algorithms.methods import resolve_settings
    from algorithms.settings import RunConfig

    for prompt, dependent in (("padding", False), ("fixed_patch", False), ("random_patch", True)):
        config = resolve_settings(RunConfig(method="ilm_tp_vp", prompt=prompt, micro_batch=8))
        assert config.batch_dependent == dependent
        assert ("micro_batch" in config.identity()) == dependent


def test_smm_is_batch_dependent_and_runs_in_chunks_with_a_note(tmp_path, cifar_root, capsys):
    from algorithms.methods import resolve_settings
    from algorithms.settings import RunConfig

    for prompt, dependent in (("pad", False), ("watermark", False), ("lowrank", False), ("smm", True)):
        config = resolve_settings(RunConfig(method="ilm_vp", prompt=prompt, micro_batch=8))
        assert config.batch_dependent == dependent and ("micro_batch" in config.identity()) == dependent
    trainer = make_trainer(tmp_path / "smm", cifar_root, "--micro-batch", "4", method="smm_vp")
    assert trainer.chunk == 4 and trainer.config.identity()["micro_batch"] == 4
    assert "what smm_vp trains depends on how a batch is split (batch norms in training mode)" in capsys.readouterr().out
    assert trainer.train_epoch(0)["train_samples"] == 50


def test_full_finetune_in_chunks_runs_with_a_note_and_refuses_auto(tmp_path, cifar_root, capsys):
    trainer = make_trainer(tmp_path / "ff", cifar_root, "--micro-batch", "4", method="full_finetune")
    assert trainer.chunk == 4
    out = capsys.readouterr().out
    assert "what full_finetune trains depends on how a batch is split (batch norms in training mode)" in out
    assert trainer.config.identity()["micro_batch"] == 4
    assert trainer.train_epoch(0)["train_samples"] == 50
    with pytest.raises(UserError, match="--micro-batch auto would make full_finetune's result depend on the device's memory"):
        make_trainer(tmp_path / "auto", cifar_root, "--micro-batch", "auto", method="full_finetune")


def test_undeclared_batch_statistics_in_the_trained_part_are_refused(tmp_path, cifar_root):
    """A prompt with a batch norm in training mode, in a family that does not declare it: refused, not silently different."""
    config = config_for(tmp_path, cifar_root, "ilm_vp", "--micro-batch", "4")
    data = load_dataset("cifar10", cifar_root, batch_size=16, subset=SubsetSpec())
    runtime = Runtime(CPU, "fp32")
    reference = FAMILIES["visual_prompt"].build(config, data, runtime).model
    transform = nn.Sequential(reference.input_transform, nn.BatchNorm2d(3))
    from models.reprogrammer import ReprogrammingModel

    model = ReprogrammingModel(transform, reference.network, build_mapping("ilm", 20, 10), channels_last=False)
    with pytest.raises(UserError, match=r"--micro-batch 4 would change this model's result: input_transform\.1 normalise over the batch"):
        Trainer(config, Experiment(model, [f"s{i}" for i in range(20)]), data, runtime, RunDir(tmp_path / "run", enabled=False))



@pytest.mark.slow
def test_clip_prompt_in_chunks_with_recompute_matches_the_plain_run(tmp_path, cifar_root):
    from clip_helpers import tiny_clip_args

    folders = {}
    for name, extra in (("plain", ()), ("lean", ("--micro-batch", "5", "--recompute"))):
        assert main("ilm_tp_vp", tiny_clip_args(tmp_path / name, cifar_root, "--epochs", "1", *extra)) == 0
        (folders[name],) = [p.parent for p in (tmp_path / name).rglob("config.json")]
    assert folders["plain"].name == folders["lean"].name  # padding prompt: exact, the same settings
    results = {n: json.loads((f / "results.json").read_text()) for n, f in folders.items()}
    assert results["lean"]["stages_recomputed"] == 2 and results["lean"]["micro_batch"] == 5  # the tiny ViT's 2 blocks
    assert results["lean"]["zero_shot_test_acc"] == results["plain"]["zero_shot_test_acc"]
    assert json.loads((folders["lean"] / "mappings" / "epoch_001.json").read_text()) == json.loads(
        (folders["plain"] / "mappings" / "epoch_001.json").read_text()
    )
    prompts = {n: torch.load(f / "ckpt.pth", weights_only=False)["model"] for n, f in folders.items()}
    for key, value in prompts["plain"].items():
        torch.testing.assert_close(prompts["lean"][key], value, rtol=1e-4, atol=1e-5)
