#!/usr/bin/env python
"""SINGLE-TP-VP: CLIP visual prompt with one text template (Bahng et al., 2022).

    python experiments/clip/single_tp_vp.py --network ViT-B/32 --dataset cifar10
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runner.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("single_tp_vp"))
