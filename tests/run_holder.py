"""A tiny run that holds its run folder until a file appears; launched as a subprocess by the lock tests.

    python tests/run_holder.py GO_FILE ilm_vp --network tiny_test_net ...

Training waits at the start of the first epoch (after the folder is locked and config.json is
written) until ``GO_FILE`` exists, then the run goes on as usual.
"""
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import conftest  # noqa: E402,F401  (registers tiny_test_net)

from algorithms.engine import Trainer  # noqa: E402
from runner.cli import main  # noqa: E402


def hold_until(go: Path) -> None:
    train_epoch = Trainer.train_epoch

    def wait_then_train(self, epoch):
        while not go.exists():
            time.sleep(0.05)
        return train_epoch(self, epoch)

    Trainer.train_epoch = wait_then_train


if __name__ == "__main__":
    hold_until(Path(sys.argv[1]))
    sys.exit(main(sys.argv[2], sys.argv[3:]))
