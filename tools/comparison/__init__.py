"""The comparison (``tools/leaderboard.py``): every method under one protocol, read from its run folders."""
from tools.comparison.cli import build_cli, main  # noqa: F401
from tools.comparison.figures import pareto_front  # noqa: F401
from tools.comparison.rows import CLIP_ROWS, CNN_ROWS, Row, search_row  # noqa: F401
