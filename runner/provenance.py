"""What a run's numbers depend on besides its flags: the code, the libraries and the machine.

The same commit, flags and seed give the same numbers only on the same arithmetic: another CPU
instruction set, thread count or GPU model changes the low-order bits of every reduction, and a
few epochs turn that into a different accuracy (docs/reproducing.md, "Same seed, other machine").
Each run's ``config.json`` records all three, so two runs that should agree can be told apart.
"""
from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

import cfg

PACKAGES = ("torch", "torchvision", "timm", "open_clip_torch", "numpy")
# environment variables that change which kernels run, or how many threads they use
ARITHMETIC_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "CUBLAS_WORKSPACE_CONFIG")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    versions["cuda"] = torch.version.cuda or "none"
    return versions


def git_commit(short: bool = False) -> str:
    """The checkout's commit, ``+dirty`` when tracked files differ from it; ``unknown`` outside git."""
    try:
        head = subprocess.run(["git", "-C", str(cfg.REPO_ROOT), "rev-parse", *(["--short"] if short else []), "HEAD"],
                              capture_output=True, text=True, timeout=10)  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(cfg.REPO_ROOT), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (Linux's /proc/cpuinfo; elsewhere what the platform module says)."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def hardware(device: torch.device) -> dict[str, object]:
    """The machine's arithmetic: CPU model, the vector instruction set PyTorch's CPU kernels use,
    threads, the GPU and cuDNN when the run is on CUDA, and any variable that changes these."""
    info: dict[str, object] = {
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cudnn"] = torch.backends.cudnn.version()
    settings = {name: os.environ[name] for name in ARITHMETIC_VARIABLES if name in os.environ}
    if settings:
        info["environment"] = settings
    return info
