"""The configuration search on Optuna (``tools/search.py``): the space, one trial, the study, the final report."""
from tools.config_search.cli import build_cli, data_flags, main, strip_flags, write_slurm  # noqa: F401
from tools.config_search.study import check_axes, counted, open_study, requeue_dead_trials  # noqa: F401
