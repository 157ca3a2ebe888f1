"""A tiny run that holds its run folder until told to go on; launched as a subprocess by the lock tests.

    python tests/run_holder.py ilm_vp --network tiny_test_net ...

Training stops at the start of the first epoch (after the folder is locked and config.json is
written), prints ``holding`` and waits for a line on its standard input (or its end), then the
run goes on as usual: two events, no polling.
"""
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import conftest  # noqa: E402,F401  (registers tiny_test_net)

from algorithms.engine import Trainer  # noqa: E402
from runner.cli import main  # noqa: E402


def hold() -> None:
    train_epoch = Trainer.train_epoch

    def wait_then_train(self, epoch):
        if epoch == 0:
            print("holding", flush=True)
            sys.stdin.readline()
        return train_epoch(self, epoch)

    Trainer.train_epoch = wait_then_train


if __name__ == "__main__":
    hold()
    sys.exit(main(sys.argv[1], sys.argv[2:]))
