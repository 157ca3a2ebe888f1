#!/usr/bin/env python
"""Run a grid of experiments (datasets x networks x methods x seeds) with one command.

    python tools/reproduce.py --preset table1                         # all of Table 1, here
    python tools/reproduce.py --preset table1 --launcher slurm        # a job-array script
    python tools/reproduce.py --preset clip --launcher print          # the shell commands
    python tools/reproduce.py --preset beyond --data-path /data      # prompts beyond ILM/BLM (docs/beyond.md)
    python tools/reproduce.py --datasets cifar10 --networks efficientnet_lite0 \\
        --methods ilm_vp flm_vp --seeds 1 2 -- --epochs 5 --max-train-samples 500

A comparison preset (``beyond``) lists *variants* instead of methods: each a label, a method
script and its flags, run on every dataset of the preset with that dataset's own flags.

Flags after ``--`` go unchanged to every run. Each job's run folder is computed with the
method's own argument parser and :meth:`RunConfig.run_path` — exactly the folder the run will
write — so the same settings always land in the same folder: finished runs are skipped, runs
with a checkpoint but no ``results.json`` are continued with ``--resume``, and a sweep can be
started again at any time.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.sweep import build_cli, main  # noqa: E402,F401  (the grids, jobs and command line live in tools/sweep/)

if __name__ == "__main__":
    sys.exit(main())
