#!/usr/bin/env python
"""ILM-TP-VP: CLIP visual prompt with iterative label mapping over template x class texts (Chen et al., CVPR 2023).

    python experiments/clip/ilm_tp_vp.py --network ViT-B/32 --dataset cifar10
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runner.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("ilm_tp_vp"))
