#!/usr/bin/env python
"""BLM-VP: visual prompting with Bayesian-guided label mapping (Cai et al., NeurIPS 2024).

    python experiments/cnn/blm_vp.py --network resnet18 --dataset flowers102
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runner.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("blm_vp"))
