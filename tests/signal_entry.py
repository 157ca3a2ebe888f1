"""Run a method script's ``main`` (test network registered) and send this process a real signal at
a chosen point; launched by tests/test_interruption.py and tests/test_stops.py.

    python tests/signal_entry.py USR1 5 ilm_vp --network tiny_test_net ...            # after optimizer step 5
    python tests/signal_entry.py TERM "mapping:2" ilm_vp --network tiny_test_net ...  # at batch 2 of a pass

``PATTERN:K``: when the K-th item of a progress bar whose description contains PATTERN is drawn
(decoding, the mapping pass, evaluation); the entry then prints to stderr how many items of that
pass were drawn after the signal (``items drawn after the signal: N``). Under torchrun only the rank
named by ``SIGNAL_RANK`` (default: every rank) sends itself the signal.
"""
import os
import signal
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import conftest  # noqa: E402,F401  (registers tiny_test_net)

from algorithms.engine import Trainer  # noqa: E402
from common import progress  # noqa: E402
from runner.cli import main  # noqa: E402


def signal_after_steps(signum: int, after: int) -> None:
    original, steps = Trainer.optimize, {"done": 0}

    def signalling(self, *args, **kwargs):
        loss = original(self, *args, **kwargs)
        steps["done"] += 1
        if steps["done"] == after:  # as SLURM would: the signal arrives while the step's work is done
            os.kill(os.getpid(), signum)
        return loss

    Trainer.optimize = signalling


def signal_in_pass(signum: int, pattern: str, at: int) -> None:
    original, state = progress.bar, {"sent": False, "after": 0}

    def bar(iterable=None, **kwargs):
        shown = original(iterable, **kwargs)
        if state["sent"] or pattern not in kwargs["desc"]:
            return shown

        def drawn():
            for i, item in enumerate(shown, 1):
                if state["sent"]:
                    state["after"] += 1
                    print(f"items drawn after the signal: {state['after']}", file=sys.stderr, flush=True)
                if i == at:
                    state["sent"] = True
                    os.kill(os.getpid(), signum)
                yield item

        return drawn()

    progress.bar = bar


if __name__ == "__main__":
    name, after, method, *argv = sys.argv[1:]
    signum = getattr(signal, f"SIG{name}")
    if os.environ.get("SIGNAL_RANK", os.environ.get("RANK", "0")) != os.environ.get("RANK", "0"):
        pass  # another rank is signalled
    elif ":" in after:
        pattern, at = after.rsplit(":", 1)
        signal_in_pass(signum, pattern, int(at))
    else:
        signal_after_steps(signum, int(after))
    sys.exit(main(method, argv, install_signal_handlers=True))
