#!/usr/bin/env python
"""FLM-VP: visual prompting with a frequency label mapping fixed before training.

    python experiments/cnn/flm_vp.py --network resnet18 --dataset flowers102
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runner.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("flm_vp"))
