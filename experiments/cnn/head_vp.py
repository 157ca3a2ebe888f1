#!/usr/bin/env python
"""Prompt + linear head: a visual prompt trained jointly with a new linear head on the frozen features.

    python experiments/cnn/head_vp.py --network resnet18 --dataset flowers102
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runner.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("head_vp"))
