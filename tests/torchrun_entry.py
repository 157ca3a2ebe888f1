"""Run a method script's ``main`` with the test network registered; launched by torchrun in tests.

    torchrun --nproc_per_node 2 tests/torchrun_entry.py ilm_vp --network tiny_test_net ...
"""
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import conftest  # noqa: E402,F401  (registers tiny_test_net)

from runner.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
