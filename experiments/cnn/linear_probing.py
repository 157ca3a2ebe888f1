#!/usr/bin/env python
"""Linear probing: a new K-way linear head on the frozen source network (paper Table 1 baseline).

    python experiments/cnn/linear_probing.py --network resnet18 --dataset flowers102
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runner.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("linear_probing"))
