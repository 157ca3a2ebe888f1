#!/usr/bin/env python
"""SMM: sample-specific masked visual reprogramming with ILM (Cai et al., ICML 2024).

    python experiments/cnn/smm_vp.py --network resnet18 --dataset gtsrb
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runner.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("smm_vp"))
