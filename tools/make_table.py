#!/usr/bin/env python
"""Result tables in the paper's layout, from run folders, with the published numbers beside ours.

    python tools/make_table.py results --preset table1 --output docs/table1   # .md and .csv
    python tools/make_table.py results --preset clip --output docs/table_clip
    python tools/make_table.py results --seeds 1 2 --where epochs=5
    python tools/make_table.py results --preset beyond --output docs/beyond_table  # a comparison preset

Rows are datasets, columns network x method, each cell ``mean ± std (n)`` over seeds and the
paper's mean after a slash; the best method of each network in a row is bold. Cells with fewer
finished seeds than expected are marked ``(n/N)!`` and every missing or unfinished run is listed
below the table. Numbers follow the paper's protocol (the best epoch's test accuracy) unless a
run chose its epoch on a validation split (``val_selected_test_acc``), marked with a dagger.

A comparison preset (one with variants, e.g. ``beyond``) gives one row per configuration and, per
dataset, both protocols side by side, the prompt's parameters and the seconds per epoch; its run
folders are found exactly as ``tools/reproduce.py`` plans them.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.tables import build_cli, main  # noqa: E402,F401  (the tables live in tools/tables/)

if __name__ == "__main__":
    sys.exit(main())
