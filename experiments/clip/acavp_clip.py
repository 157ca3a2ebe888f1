#!/usr/bin/env python
"""ACAVP on CLIP: affine, colour and additive visual prompting, one text template (Enomoto, NeurIPS 2025).

    python experiments/clip/acavp_clip.py --network ViT-B/32 --dataset cifar10
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runner.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("acavp_clip"))
