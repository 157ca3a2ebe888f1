#!/usr/bin/env python
"""Every reprogramming method under one protocol, side by side: the comparison no paper runs.

    python tools/leaderboard.py --datasets dtd10 --network efficientnet_lite0 --data-path /data --epochs 5 --seeds 1 2 3
    python tools/leaderboard.py ... --runs-per-gpu 4                 # four runs at a time on each GPU
    python tools/leaderboard.py ... --launcher slurm                 # a job array; then again with --report-only
    python tools/leaderboard.py ... --search-study results/search/<study>   # the search's choice as a row

Rows (tools/comparison/rows.py, one line each): every registered CNN method with its own recipe,
the prompts and mappings beyond ILM, linear probing, full fine-tuning, the search's choice, and a
CLIP section when the CLIP weights are on disk. The same data, split, validation fraction, epochs
and seeds for all; selection on validation only. Finished runs are read, not retrained, so the
same command continues a stopped comparison. Writes leaderboard.md, .csv, .json and Pareto figures.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.comparison import build_cli, main  # noqa: E402,F401  (the comparison lives in tools/comparison/)

if __name__ == "__main__":
    sys.exit(main())
