"""The paper's figures as PNG files from run folders (``tools/plots.py``)."""
from tools.figures.cli import build_cli, main  # noqa: F401
from tools.figures.common import PlotError, pick_epochs, run_title  # noqa: F401
from tools.figures.run_figures import (  # noqa: F401
    choose_targets,
    load_mappings,
    load_metrics,
    plot_curves,
    plot_heatmap,
    plot_mapping,
    plot_prompts,
    prompt_images,
    prompt_snapshots,
    stretch,
)  # fmt: skip
from tools.figures.sweep_figures import gain_with_error, plot_fraction, plot_gain  # noqa: F401
