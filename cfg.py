"""Default locations, each overridable by an environment variable or a command-line flag.

Edit the defaults here, or set for example ``VP_DATA=/datasets VP_RESULTS=/scratch/results``.
Relative paths are resolved against the repository root, so scripts work from any directory.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent


def _path(env: str, default: str) -> Path:
    path = Path(os.environ.get(env, default)).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


# Root holding one folder (or torchvision archive folder) per dataset.
DATA_PATH: Path = _path("VP_DATA", "datasets")
# Every run writes into its own folder below this one.
RESULTS_PATH: Path = _path("VP_RESULTS", "results")
# Decoded-image caches for large datasets (memory-mapped uint8 arrays).
CACHE_PATH: Path = _path("VP_CACHE", "cache")
# Whether a missing torchvision dataset or weight file may be downloaded (set VP_DOWNLOAD=0 offline).
DOWNLOAD: bool = os.environ.get("VP_DOWNLOAD", "1").lower() not in ("0", "false", "no")
# Runs sharing one GPU (tools/reproduce.py --runs-per-gpu sets it for each run it starts): the
# memory probes (--micro-batch auto, the automatic evaluation batch) plan with this share of free memory.
RUNS_PER_GPU: int = max(1, int(os.environ.get("VP_RUNS_PER_GPU", "1") or 1))
