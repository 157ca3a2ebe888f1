"""Sweeps of runs (``tools/reproduce.py``): presets, jobs and their run folders, the command line."""
from runner.records import FINISHED  # noqa: F401,E402
from tools.sweep.cli import build_cli, dataset_label, jobs_from_args, launch_local, main, write_slurm  # noqa: F401,E402
from tools.sweep.jobs import (  # noqa: F401
    NEW,
    PARTIAL,
    SLURM_RESUME,
    Job,
    PlannedJob,
    ensure_registered,
    expand_grid,
    expand_variants,
    find_script,
    method_config,
    plan,
    run_status,
    slurm_command,
)  # fmt: skip
from tools.sweep.presets import (  # noqa: F401
    BEYOND_BY_LABEL,
    BEYOND_DATASETS,
    BEYOND_FEWSHOT_BEST,
    BEYOND_VARIANTS,
    CLIP_DATASETS,
    CLIP_METHODS,
    CNN_METHODS,
    PAPER_SEEDS,
    PRESETS,
    TABLE1_DATASETS,
    TABLE1_NETWORKS,
    Preset,
    Variant,
)  # fmt: skip
