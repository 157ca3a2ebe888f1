"""torchrun on CPU (gloo, 2 processes) computes what one process computes with the same global batch."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, tiny_args

from runner.cli import main

pytestmark = pytest.mark.slow


def torchrun_available() -> bool:
    return shutil.which("torchrun", path=str(Path(sys.executable).parent)) is not None or shutil.which("torchrun") is not None


def run_folder(results: Path) -> Path:
    (path,) = [p.parent for p in results.rglob("config.json")]
    return path


def outputs(folder: Path) -> dict:
    ckpt = torch.load(folder / "ckpt.pth", map_location="cpu", weights_only=False)
    return {
        "theta": ckpt["model"]["input_transform.theta"],
        "metrics": [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()],
        "mappings": {p.name: json.loads(p.read_text()) for p in sorted((folder / "mappings").iterdir())},
        "config": json.loads((folder / "config.json").read_text()),
        "files": sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and "tensorboard" not in p.parts),
    }


def two_ranks(tmp_path, argv: list[str], entry: tuple[str, ...] = ("torchrun_entry.py", "ilm_vp"), status: int = 0, **env: str) -> subprocess.CompletedProcess:
    """ILM-VP under torchrun with 2 CPU processes (gloo); fails the test unless it exits with ``status``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **env}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           str(REPO / "tests" / entry[0]), *entry[1:], *argv]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240)
    assert proc.returncode == status, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("lm_source, micro_batch", [("pass", None), ("train", None), ("pass", "3")])
def test_two_processes_match_one_with_the_same_global_batch(tmp_path, cifar_root, lm_source, micro_batch):
    # 50 training and 20 test images: 2 ranks x 8 per step == 1 process x 16 per step, and the
    # last step (2 images) splits 1 + 1, so every step sees exactly the same global batch.
    # With --micro-batch 3 each rank computes its 8 in chunks of 3 + 3 + 2 (its last step: 1).
    common = ["--epochs", "3", "--lm-source", lm_source, "--milestones", "0.9", "0.95"]
    single_args = tiny_args(tmp_path / "one", cifar_root, *common)
    assert main("ilm_vp", single_args) == 0
    dist_args = tiny_args(tmp_path / "two", cifar_root, *common, *(["--micro-batch", micro_batch] if micro_batch else []))
    dist_args[dist_args.index("--batch-size") + 1] = "8"
    proc = two_ranks(tmp_path, dist_args)
    assert proc.stdout.count("run folder:") == 1  # only rank 0 reports (and writes)

    one, two = outputs(run_folder(tmp_path / "one")), outputs(run_folder(tmp_path / "two"))
    assert two["config"]["resolved"]["world_size"] == 2
    assert one["files"] == two["files"]
    assert one["mappings"] == two["mappings"]
    torch.testing.assert_close(two["theta"], one["theta"], atol=1e-4, rtol=1e-4)
    for a, b in zip(one["metrics"], two["metrics"]):
        assert a["test_acc"] == b["test_acc"]  # evaluation shards are exact: 10 + 10 test images
        assert a["train_samples"] == b["train_samples"] == 50
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["mapping_changes"] == b["mapping_changes"]


@pytest.mark.slow
@pytest.mark.parametrize("flags", [("--prompt", "watermark"), ("--augment", "pad_crop_flip")])
def test_two_processes_match_one_with_augmentation(tmp_path, cifar_root, flags):
    """Augmented prompts without batch statistics: each sample's augmentation is drawn from its own
    stream (seed, epoch, dataset index), so 2 ranks x 8 reproduce 1 process x 16 (watermark: BLM's
    resize4_crop by default; pad with the CIFAR crop and flip)."""
    common = ["--epochs", "2", "--milestones", "0.9", "0.95", *flags]
    assert main("ilm_vp", tiny_args(tmp_path / "one", cifar_root, *common)) == 0
    dist_args = tiny_args(tmp_path / "two", cifar_root, *common)
    dist_args[dist_args.index("--batch-size") + 1] = "8"
    two_ranks(tmp_path, dist_args)

    one, two = run_folder(tmp_path / "one"), run_folder(tmp_path / "two")
    config = json.loads((one / "config.json").read_text())
    assert config["resolved"]["augment"] != "none"
    a, b = (torch.load(f / "ckpt.pth", map_location="cpu", weights_only=False) for f in (one, two))
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, atol=1e-4, rtol=1e-4)
    results = [json.loads((f / "results.json").read_text()) for f in (one, two)]
    for key in ("best_test_acc", "final_test_acc"):
        if key in results[0]:
            assert results[0][key] == results[1][key]
    for x, y in zip(a["history"], b["history"]):
        assert x["test_acc"] == y["test_acc"] and x["train_acc"] == y["train_acc"]
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-4)


def gloo_threads() -> list[str]:
    """The names of this process's threads that gloo runs (its work queue and its TCP loop)."""
    names = (Path(f"/proc/self/task/{t}/comm").read_text().strip() for t in os.listdir("/proc/self/task"))
    return sorted(n for n in names if "gloo" in n)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the thread list from /proc")
def test_shutdown_ends_the_gloo_threads_even_while_a_cycle_holds_the_ddp_model(tmp_path):
    """A rank's DistributedDataParallel in a reference cycle (as the trainer is) kept the process group
    and gloo's threads alive past destroy_process_group, to be torn down at an arbitrary moment, the
    interpreter's finalization included: the rare SIGABRT ("terminate called without an active
    exception") of a rank at exit. runner.devices.shutdown_runtime ends them while Python is alive."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from runner.devices import shutdown_runtime

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        holder = {"model": DistributedDataParallel(torch.nn.Linear(3, 2))}
        holder["self"] = holder  # unreachable after the del below, except through the cycle collector
        holder["model"](torch.ones(4, 3)).sum().backward()
        del holder
        assert gloo_threads()
    finally:
        shutdown_runtime(wait_for_peers=True)
    assert not dist.is_initialized() and gloo_threads() == []


def test_a_signal_to_one_rank_during_evaluation_stops_both_ranks_at_the_same_batch(tmp_path, cifar_root):
    """Rank 0 alone is signalled at the first test batch of epoch 2; the ranks agree before each batch
    (common.preemption.stoppable), so rank 1 stops there too instead of waiting at the pass's reduction."""
    argv = tiny_args(tmp_path / "two", cifar_root, "--eval-batch-size", "4", "--milestones", "0.9", "0.95")
    argv[argv.index("--batch-size") + 1] = "8"
    entry = ("signal_entry.py", "TERM", "epoch 2 test:1", "ilm_vp")
    proc = two_ranks(tmp_path, argv, entry, status=1, SIGNAL_RANK="0")  # torchrun reports its workers' 75 as a failure
    assert proc.stderr.count("stopped by SIGTERM during the epoch 2 test pass; the last checkpoint ") == 2, proc.stderr[-3000:]
    assert "items drawn after the signal: 2" not in proc.stderr
