"""runner/gpu_share.py: slots per GPU, the automatic count, one process per run, never one folder twice."""
from __future__ import annotations

import argparse
import threading

import pytest

from runner import gpu_share


def test_slots_spread_the_first_runs_over_the_gpus():
    assert gpu_share.slots(["0", "1"], 3) == ["0", "1", "0", "1", "0", "1"]
    assert gpu_share.slots([], 2) == [None, None]
    assert gpu_share.slots(["4"], 1) == ["4"]


def test_auto_divides_the_least_free_memory_by_the_run_estimate_and_is_one_without_a_gpu():
    free = {"0": 139.0, "1": 40.0}.__getitem__
    assert gpu_share.resolve_runs_per_gpu("auto", ["0"], 12.0, free) == 8  # 11 fit, at most MAX_AUTO_RUNS
    assert gpu_share.resolve_runs_per_gpu("auto", ["0", "1"], 12.0, free) == 3
    assert gpu_share.resolve_runs_per_gpu("auto", ["1"], 64.0, free) == 1  # not even one: still one
    assert gpu_share.resolve_runs_per_gpu("auto", [], 12.0, free) == 1
    assert gpu_share.resolve_runs_per_gpu(5, ["0"], 12.0, free) == 5


def test_free_memory_is_read_at_this_process_s_index_of_the_gpu():
    assert gpu_share.torch_index("3", None) == 3 and gpu_share.torch_index("3", "") == 3
    assert gpu_share.torch_index("3", "2,3") == 1 and gpu_share.torch_index("2", "2, 3") == 0


def test_runs_per_gpu_flag_values():
    assert gpu_share.runs_per_gpu_value("auto") == "auto" and gpu_share.runs_per_gpu_value("3") == 3
    for bad in ("0", "-1", "two"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive number of runs or auto"):
            gpu_share.runs_per_gpu_value(bad)


def test_each_run_sees_its_gpu_and_how_many_share_it():
    env = gpu_share.run_environment("3", 4, base={"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    assert env == {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "3", "VP_RUNS_PER_GPU": "4"}
    assert "CUDA_VISIBLE_DEVICES" not in gpu_share.run_environment(None, 2, base={})


def test_repeats_of_a_run_folder_are_set_aside():
    kept, repeats = gpu_share.distinct(["a/1", "b/2", "a/1", "c/3", "b/2"], key=str)
    assert kept == ["a/1", "b/2", "c/3"] and repeats == ["a/1", "b/2"]


def test_tasks_run_concurrently_up_to_the_slots_and_never_two_in_one_slot():
    """Four tasks in the slots of two GPUs, one run each: two must be in flight together (a barrier
    of two), and a slot is never held by two tasks at once."""
    together = threading.Barrier(2, timeout=10)
    lock = threading.Lock()
    holding: dict[str, int] = {}
    peak = {"running": 0, "now": 0}

    def execute(task: int, slot: str | None) -> int:
        with lock:
            holding[slot] = holding.get(slot, 0) + 1
            assert holding[slot] == 1
            peak["now"] += 1
            peak["running"] = max(peak["running"], peak["now"])
        if task < 2:
            together.wait()  # fails (BrokenBarrierError) unless the first two run at once
        with lock:
            holding[slot] -= 1
            peak["now"] -= 1
        return 0 if task != 3 else 9

    finished = []
    failures = gpu_share.run_in_slots(range(4), gpu_share.slots(["0", "1"], 1), execute, lambda t, c: finished.append(t))
    assert failures == [(3, 9)] and sorted(finished) == [0, 1, 2, 3] and peak["running"] == 2
