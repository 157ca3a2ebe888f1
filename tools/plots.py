#!/usr/bin/env python
"""The paper's figures as PNG files, drawn from run folders.

    python tools/plots.py prompts  RUN -o docs/prompts.png          # prompt pattern over epochs (Fig. 1 row 1)
    python tools/plots.py mapping  RUN -o docs/mapping.png          # label mapping per epoch (Fig. 1 rows 2-4)
    python tools/plots.py curves   RUN [RUN ...] -o docs/curves.png # training loss, mapping changes (Fig. 1 row 5)
    python tools/plots.py gain     RESULTS -o docs/gain.png         # ILM-VP minus FLM-VP per dataset (Fig. 2)
    python tools/plots.py fraction RESULTS --dataset gtsrb -o docs/fraction.png  # accuracy vs data (Fig. 3)
    python tools/plots.py heatmap  RUN -o docs/heatmap.png          # test predictions on source classes
    python tools/plots.py text-prompts RUN -o docs/text_prompts.png # CLIP: chosen template per class

RUN is one run folder (``<results>/<method>/<dataset>/<network>/<run id>``), RESULTS a results root.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.figures import build_cli, main  # noqa: E402,F401  (the figures live in tools/figures/)

if __name__ == "__main__":
    sys.exit(main())
