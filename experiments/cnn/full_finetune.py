#!/usr/bin/env python
"""Full fine-tuning: every weight of the source network trains, with a new K-way head (paper Table 1 baseline).

    python experiments/cnn/full_finetune.py --network resnet18 --dataset flowers102
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runner.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("full_finetune"))
