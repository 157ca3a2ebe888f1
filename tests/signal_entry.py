"""Run a method script's ``main`` (test network registered) and send this process a real signal
after a chosen optimizer step; launched by tests/test_interruption.py.

    python tests/signal_entry.py USR1 5 ilm_vp --network tiny_test_net ...
"""
import os
import signal
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import conftest  # noqa: E402,F401  (registers tiny_test_net)

from algorithms.engine import Trainer  # noqa: E402
from runner.cli import main  # noqa: E402

if __name__ == "__main__":
    name, after, method, *argv = sys.argv[1:]
    original, steps = Trainer.optimize, {"done": 0}

    def signalling(self, *args, **kwargs):
        loss = original(self, *args, **kwargs)
        steps["done"] += 1
        if steps["done"] == int(after):  # as SLURM would: the signal arrives while the step's work is done
            os.kill(os.getpid(), getattr(signal, f"SIG{name}"))
        return loss

    Trainer.optimize = signalling
    sys.exit(main(method, argv))
