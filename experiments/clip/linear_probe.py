#!/usr/bin/env python
"""CLIP linear probe: logistic regression on frozen CLIP image features (Radford et al., 2021).

    python experiments/clip/linear_probe.py --network ViT-B/32 --dataset cifar10
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runner.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("clip_linear_probe"))
