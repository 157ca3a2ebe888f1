"""Several runs on one GPU at once: slots, the automatic count, and a launcher of independent processes.

One prompt-training run leaves a large GPU mostly idle (a frozen ResNet-18 at batch 128 uses some
6% of an H200's dense peak, docs/speed.md), so a sweep gains by running several at once. Each run
stays its own process with its own CUDA context, seed and run folder: sharing a device changes
when its kernels run, never what they compute, so a run's results are those it gets alone. The
one thing runs on one GPU share is memory: each is told how many share it (``VP_RUNS_PER_GPU``,
:data:`cfg.RUNS_PER_GPU`) and its memory probes plan with that share of what is free.

Used by ``tools/reproduce.py`` (``--runs-per-gpu``); written so any sweep (a configuration
search) can hand it a list of commands.
"""
from __future__ import annotations

import os
import queue
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TypeVar

from common.argtypes import positive_int_or

T = TypeVar("T")

AUTO = "auto"
# --runs-per-gpu auto: one run's GPU memory, a planning estimate. EfficientNet-Lite0 ILM-VP at batch
# 128 peaks at 8.3 GB on a CPU (docs/memory.md); add the CUDA context, the data and the evaluation batch
RUN_MEMORY_GIB = 12.0
# --runs-per-gpu auto never starts more than this many on one GPU: past it the runs only queue for the chip
MAX_AUTO_RUNS = 8

# ``--runs-per-gpu``: a positive number or ``auto``
runs_per_gpu_value = positive_int_or(AUTO, "runs")




def torch_index(gpu: str, visible: str | None) -> int:
    """This process's CUDA index of the GPU a run gets as ``CUDA_VISIBLE_DEVICES=gpu``: its place in
    this process's own ``CUDA_VISIBLE_DEVICES`` (``visible``) when set, else the number itself."""
    listed = [g.strip() for g in visible.split(",")] if visible else []
    return listed.index(gpu) if gpu in listed else int(gpu)


def free_gib(gpu: str) -> float:
    """Free memory of the GPU ``gpu`` (as :func:`run_environment` hands it to a run), in GiB."""
    import torch

    free, _ = torch.cuda.mem_get_info(torch_index(gpu, os.environ.get("CUDA_VISIBLE_DEVICES")))
    return free / 2**30


def resolve_runs_per_gpu(
    requested: int | str, gpus: Sequence[str], run_memory_gib: float = RUN_MEMORY_GIB, free: Callable[[str], float] = free_gib
) -> int:
    """``requested`` as a number: ``auto`` is the fewest, over ``gpus``, of free memory / ``run_memory_gib``
    (1 to :data:`MAX_AUTO_RUNS`), and 1 where there is no GPU."""
    if requested != AUTO:
        return int(requested)
    if not gpus:
        return 1
    fitting = min(int(free(g) // run_memory_gib) for g in gpus)
    return max(1, min(MAX_AUTO_RUNS, fitting))


def slots(gpus: Sequence[str], runs_per_gpu: int) -> list[str | None]:
    """One entry per run that may execute at once: each GPU ``runs_per_gpu`` times, spread so the
    first runs go to different GPUs; without GPUs, ``runs_per_gpu`` CPU slots (None)."""
    return [g for _ in range(runs_per_gpu) for g in (gpus or [None])]


def run_environment(gpu: str | None, runs_per_gpu: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a run in a slot: its one GPU, and how many runs share it."""
    env = dict(os.environ if base is None else base)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    env["VP_RUNS_PER_GPU"] = str(runs_per_gpu)
    return env


def distinct(items: Sequence[T], key: Callable[[T], Hashable]) -> tuple[list[T], list[T]]:
    """``items`` with one per ``key`` (the first), and the repeats: two runs never write one run folder."""
    seen: set = set()
    kept, repeats = [], []
    for item in items:
        (repeats if key(item) in seen else kept).append(item)
        seen.add(key(item))
    return kept, repeats


def run_in_slots(
    tasks: Sequence[T], free_slots: Sequence[str | None], execute: Callable[[T, str | None], int], done: Callable[[T, int], None] | None = None
) -> list[tuple[T, int]]:
    """Run every task with ``execute(task, slot) -> exit code``, as many at once as there are slots,
    each slot used by one task at a time. ``done(task, code)`` is called as each finishes. Returns
    the failures as (task, exit code)."""
    pool_slots: queue.Queue = queue.Queue()
    for slot in free_slots or [None]:
        pool_slots.put(slot)

    def in_a_slot(task: T) -> int:
        slot = pool_slots.get()
        try:
            return execute(task, slot)
        finally:
            pool_slots.put(slot)

    failures = []
    with ThreadPoolExecutor(max_workers=max(1, len(free_slots))) as pool:
        futures = {pool.submit(in_a_slot, t): t for t in tasks}
        for future in as_completed(futures):
            task, code = futures[future], future.result()
            if code != 0:
                failures.append((task, code))
            if done is not None:
                done(task, code)
    return failures
