#!/usr/bin/env python
"""ACAVP: affine, colour and additive visual prompting with TrivialAugment (Enomoto, NeurIPS 2025).

    python experiments/cnn/acavp_vp.py --network efficientnet_lite0 --dataset cifar10
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runner.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("acavp_vp"))
