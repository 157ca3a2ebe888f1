#!/usr/bin/env python
"""AttrVR: CLIP visual prompt trained against LLM-written class attributes (Cai et al., ICLR 2025).

    python experiments/clip/attrvr.py --dataset dtd --attributes /path/to/attributes/gpt3
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runner.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("attrvr"))
