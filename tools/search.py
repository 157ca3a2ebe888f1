#!/usr/bin/env python
"""Search the prompt, mapping and recipe for one dataset on Optuna, choosing on validation only.

    python tools/search.py --dataset dtd10 --network efficientnet_lite0 --data-path /data \\
        --space autovp --trials 24 --epochs 5 -- --batch-size 64
    python tools/search.py ... --workers 2                      # two trials at a time here
    python tools/search.py ... --launcher slurm --array-tasks 8 # a job array sharing the study

Every trial is an ordinary run of a method script (the command is printed and stored with the
trial), in its ordinary run folder: a configuration already trained is read, not trained again.
The study lives in ``<results>/search/<study>/study.db`` (``--storage URL`` for a shared
database), so the same command continues a killed search. Selection uses only validation
accuracy; after the search the best configuration is re-run on ``--final-seeds`` seeds and its
validation-selected test accuracy is reported once, beside the best fixed configuration of
docs/beyond.md and linear probing (docs/search.md).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.config_search import build_cli, main  # noqa: E402,F401  (the search lives in tools/config_search/)

if __name__ == "__main__":
    sys.exit(main())
