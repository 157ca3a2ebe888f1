"""Result tables from run folders (``tools/make_table.py``): the paper's layout beside its numbers, and comparison presets."""
from tools.tables.cells import CLIP_COLUMN, PAPER_DIR, PROTOCOLS, Cell, build_cells, choose_setting, expected_cells, load_paper  # noqa: F401
from tools.tables.cli import build_cli, emit, main  # noqa: F401
from tools.tables.paper_table import (  # noqa: F401
    DIFFERS_MARK,
    DIFFERS_NOTE,
    METHOD_NAMES,
    NETWORK_NAMES,
    RANDOM_MARK,
    RANDOM_NOTE,
    best_methods,
    format_cell,
    layout,
    markdown,
    missing_report,
    to_csv,
)  # fmt: skip
from tools.tables.runs import Run, collect_runs, has_random_weights, matches, parse_where, read_run  # noqa: F401
from tools.tables.variants import VariantCell, mean_std, variant_cells, variant_csv, variant_markdown  # noqa: F401
