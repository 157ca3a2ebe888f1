"""Run a method script with the test network registered: the ``--python`` of tests/test_search.py.

    python tests/search_entry.py experiments/cnn/ilm_vp.py --network tiny_test_net ...

``VP_TEST_HOLD_ONCE=<marker file>``: the first run to write its epoch checkpoint (the one that
creates the marker) then waits until a stop is requested, so a test's signal always lands
mid-run however fast or slow the machine; a bound of 10 minutes keeps a forgotten run from staying.
"""
import os
import runpy
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import conftest  # noqa: E402,F401  (registers tiny_test_net)


def hold_after_first_checkpoint(marker: Path) -> None:
    """Make :meth:`RunDir.save` of the epoch checkpoint wait for a stop request once (see above)."""
    from algorithms.outputs import CHECKPOINT
    from common import preemption
    from runner.run_dir import RunDir

    save = RunDir.save

    def save_then_hold(self: RunDir, name: str, state: dict) -> None:
        save(self, name, state)
        if name != CHECKPOINT:
            return
        try:
            marker.open("x").close()  # only the first run of the test holds
        except FileExistsError:
            return
        held_until = time.time() + 600
        while preemption.requested() is None and time.time() < held_until:
            time.sleep(0.05)

    RunDir.save = save_then_hold


if __name__ == "__main__":
    if os.environ.get("VP_TEST_HOLD_ONCE"):
        hold_after_first_checkpoint(Path(os.environ["VP_TEST_HOLD_ONCE"]))
    script, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_path(script, run_name="__main__")
