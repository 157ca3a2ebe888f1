#!/usr/bin/env python
"""DVP: several CLIP visual prompts, each against its own group of class descriptions (Cai et al., ICML 2025).

    python experiments/clip/dvp.py --dataset dtd --grouping cause --descriptions /path/to/attributes/dvp-causes
    python experiments/clip/dvp.py --dataset dtd --grouping cluster --descriptions /path/to/attributes/gpt3
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runner.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("dvp"))
