"""Run a method script with the test network registered: the ``--python`` of tests/test_search.py.

    python tests/search_entry.py experiments/cnn/ilm_vp.py --network tiny_test_net ...
"""
import runpy
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import conftest  # noqa: E402,F401  (registers tiny_test_net)

if __name__ == "__main__":
    script, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_path(script, run_name="__main__")
