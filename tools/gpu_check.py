#!/usr/bin/env python
"""A GPU check anyone can run: every method family on CUDA against an fp32 run, plus the GPU-only paths.

What no CPU test can show: each method family trains for ``--epochs`` (2) on a small CIFAR-10
subset on CUDA at its default precision (fp16 with loss scaling for the prompt methods, bf16
elsewhere) and again with ``--precision fp32``; each pair must have finite training losses, test
accuracies within ``--tolerance`` points, and the same label mapping after the first epoch's
mapping pass (that pass runs in fp32 in both). Then ``--compile``, ``--compile max``,
``--micro-batch auto``, batches streamed from pinned host memory on the side copy stream
(``--resident-data false``), today's evaluation batch (``--eval-batch-size 256``) and ``--resume``
after an interruption are each checked against the plain run of the same precision. The runs go
``--runs-at-once`` at a time on the one GPU (:mod:`runner.gpu_share`), each its own process.

    python tools/gpu_check.py                     # about 2-4 minutes on one H100/H200
    python tools/gpu_check.py --only ilm_vp resume --runs-at-once 1

Prints one table, writes ``gpu_check.json`` in ``--results-path``, exits 1 if a check fails and
2 (with one ``error:`` line) on a machine without CUDA. The networks have random weights (nothing
downloads): the check compares paths of computation, not the accuracy of a method. CIFAR-10 image
folders are looked up as ``tools/bench.py`` does; without them a synthetic set of the same shape
is written.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.gpu_checks import build_cli, main  # noqa: E402,F401  (the check lives in tools/gpu_checks/)

if __name__ == "__main__":
    sys.exit(main())
