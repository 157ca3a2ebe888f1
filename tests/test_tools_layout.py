"""tools/ is small packages with thin entry scripts: no module over 300 lines, the scripts users run are still there."""
from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

LIMIT = 300
SCRIPTS = ("search.py", "make_table.py", "plots.py", "reproduce.py", "bench.py", "gpu_check.py", "compare_mappings.py", "leaderboard.py")


def test_no_module_under_tools_is_over_300_lines():
    sizes = {p.relative_to(REPO).as_posix(): len(p.read_text().splitlines()) for p in (REPO / "tools").rglob("*.py")}
    assert sizes and not {p: n for p, n in sizes.items() if n > LIMIT}


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_entry_script_answers_help(script):
    done = subprocess.run([sys.executable, str(REPO / "tools" / script), "--help"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr[-2000:]


def test_no_package_shares_a_name_with_an_entry_script():
    packages = {p.parent.name for p in (REPO / "tools").glob("*/__init__.py")}
    assert not packages & {s.removesuffix(".py") for s in SCRIPTS}
