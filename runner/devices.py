"""Resolving where a run executes: the device, the precision, torchrun's process group, the CPU allocator."""
from __future__ import annotations

import ctypes
import gc
import os

import torch
import torch.distributed as dist

from algorithms.runtime import Runtime
from common.errors import UserError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = "auto, cpu, cuda, cuda:N"  # what --device accepts: the device types the engine is written and tested for
EVAL_PRECISIONS = ("fp32", "train")


def tune_cpu_allocator() -> bool:
    """Keep freed activation buffers in the heap instead of returning them to the kernel.

    glibc serves large blocks with mmap and unmaps them on free, so every training step
    page-faults its activations back in; measured here this costs 6x the system time of a
    step. Raising the mmap and trim thresholds keeps the memory mapped between steps.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    limit = 2**31 - 1
    return bool(libc.mallopt(m_mmap_threshold, limit)) and bool(libc.mallopt(m_trim_threshold, limit))


def cpu_supports_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise UserError(f"unknown device {name!r}; choose from {DEVICES}") from exc
    if device.type not in ("cpu", "cuda"):  # torch knows mps, meta, xpu, ...: the engine does not run on them
        raise UserError(f"unsupported device {name!r}; choose from {DEVICES}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r} requested but CUDA is not available; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def resolve_precision(precision: str, device: torch.device, cuda_auto: str = "bf16") -> str:
    """``auto``: on CUDA the method family's choice ``cuda_auto`` (fp16 with loss scaling for the
    prompt methods, as their reference code; bf16 elsewhere, fp16 where bf16 is missing); fp32 on CPU."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if cuda_auto == "bf16" and torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if device.type == "cpu" and precision == "fp16":
        raise UserError("fp16 autocast is for CUDA; use --precision bf16 or fp32 on CPU")
    if device.type == "cpu" and precision == "bf16" and not cpu_supports_bf16():
        raise UserError("this CPU has no bf16 support; use --precision fp32")
    return precision


def resolve_eval_precision(eval_precision: str, precision: str) -> str | None:
    """``fp32``: evaluate without autocast, as the reference code; ``train``: at the training
    precision (None). Logits and mappings are float32 either way."""
    if eval_precision not in EVAL_PRECISIONS:
        raise UserError(f"unknown eval precision {eval_precision!r}; choose from {', '.join(EVAL_PRECISIONS)}")
    return None if eval_precision == "train" or precision == "fp32" else "fp32"


def arithmetic(device_type: str, precision: str) -> str | None:
    """A run's :attr:`~algorithms.settings.RunConfig.arithmetic`: None on the CPU (its ``--precision``
    says it; the CPU runs made before this setting keep their folders), else ``<type>-<precision>``."""
    return None if device_type == "cpu" else f"{device_type}-{precision}"


def planned_arithmetic(device: str, precision: str, cuda_auto: str = "bf16") -> str | None:
    """The arithmetic a run of these flags will resolve to on this machine, without starting it
    (for tools that compute run folders). An explicit ``cuda`` on a machine without CUDA (a login
    node writing a job array) plans for a GPU with bf16."""
    try:
        resolved = resolve_device(device)
    except UserError:
        resolved = torch.device("cuda") if device.startswith("cuda") else torch.device("cpu")
    if resolved.type == "cpu":
        return arithmetic("cpu", precision)
    if not torch.cuda.is_available():
        return arithmetic("cuda", cuda_auto if precision == "auto" else precision)
    return arithmetic(resolved.type, resolve_precision(precision, resolved, cuda_auto))


def setup_runtime(device: str = "auto", precision: str = "auto", cuda_auto: str = "bf16", eval_precision: str = "fp32") -> Runtime:
    """Start the process group when launched by torchrun, pick the device and precisions."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if resolved.type == "cpu":
        tune_cpu_allocator()
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        dist.init_process_group(backend=backend)
    train_precision = resolve_precision(precision, resolved, cuda_auto)
    return Runtime(resolved, train_precision, rank, world_size, resolve_eval_precision(eval_precision, train_precision))


def shutdown_runtime(wait_for_peers: bool = False) -> None:
    """Leave the process group cleanly (torchrun warns about, and may hang on, one left open).

    After a successful run ``wait_for_peers`` first waits for every rank: a rank that tears the
    group down while a peer still has collectives in flight can abort that peer (gloo).

    The run's objects are collected first: the trainer sits in a reference cycle, and its
    DistributedDataParallel keeps the process group alive past ``destroy_process_group`` (gloo's
    worker and TCP-loop threads kept running) until the cycle collector frees it, at whatever
    moment, the interpreter's own finalization included, where a gloo thread that needs the GIL
    is terminated and the process aborts ("terminate called without an active exception", the
    rare SIGABRT of a rank at exit). Collected here, the group and its threads end in
    ``destroy_process_group``, with every rank past the barrier and Python fully alive.
    """
    if dist.is_available() and dist.is_initialized():
        if wait_for_peers:
            dist.barrier()
        gc.collect()
        dist.destroy_process_group()
