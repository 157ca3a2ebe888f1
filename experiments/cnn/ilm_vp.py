#!/usr/bin/env python
"""ILM-VP: iterative label mapping visual prompting (Chen et al., CVPR 2023).

    python experiments/cnn/ilm_vp.py --network resnet18 --dataset flowers102
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runner.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("ilm_vp"))
