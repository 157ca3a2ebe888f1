"""The tools' outputs on hand-made run folders equal what they were before reading runs through
runner/records.py: tests/golden/ was written by the tools of commit d3b4455 (before the move) on
tests/tool_fixtures.py's tree. Lines that the tables now add on purpose (the setting they show, the
runs that differ from the protocol) are compared apart."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from tool_fixtures import sweep_tree

from tools import figures, tables

GOLDEN = REPO / "tests" / "golden"
TABLES = {
    "table_all": [],
    "table_seeds": ["--seeds", "1", "2", "3", "--title", "T"],
    "table_where": ["--where", "epochs=10"],
    "table_preset": ["--preset", "table1-resnet18", "--datasets", "flowers102", "dtd"],
    "table_final": ["--protocol", "final", "--datasets", "dtd"],
}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return sweep_tree(tmp_path_factory.mktemp("golden") / "res")


def without_new_lines(text: str) -> list[str]:
    """The text as the old tool wrote it: without the marks of runs that differ from the protocol
    (§, its note and its list) and with the other-setting line cut where it now names the setting shown."""
    text = text.replace(f" {tables.DIFFERS_NOTE}", "").replace(tables.DIFFERS_MARK + " (", " (")
    lines = text.split("\n\n§ Not the protocol")[0].rstrip("\n").splitlines()
    return [line.replace("; the one shown", "\0").split("\0")[0] + "; choose with --where KEY=VALUE" if "the one shown" in line else line
            for line in lines]  # fmt: skip


@pytest.mark.parametrize("name", sorted(TABLES))
def test_tables_equal_the_tables_before_the_record(name, tree, tmp_path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert tables.main([str(tree), *TABLES[name], "--output", str(tmp_path / name)]) == 0
    text = out.getvalue().replace(str(tree), "<ROOT>")
    old = (GOLDEN / f"{name}.md").read_text()
    assert without_new_lines(text) == old.rstrip("\n").splitlines()
    old_csv = (GOLDEN / f"{name}.csv").read_text().splitlines()
    new_csv = (tmp_path / f"{name}.csv").read_text().replace(str(tree), "<ROOT>").splitlines()
    assert [line.rsplit(",", 1)[0] for line in new_csv] == old_csv  # the new last column: differences


def test_the_table_names_the_setting_it_shows(tree):
    cells = tables.build_cells(tables.collect_runs(tree), None, [1, 2])
    (line,) = [x for x in tables.missing_report(cells) if x.startswith("ilm_vp / svhn")]
    assert "the one shown (most finished runs) has epochs=5 (other: 10)" in line


def test_figures_and_curves_equal_the_figures_before_the_record(tree, tmp_path):
    run = next(p for p in (tree / "ilm_vp/flowers102/resnet18").iterdir() if p.name.startswith("seed1-"))
    assert figures.load_metrics(run) == json.loads((GOLDEN / "curves_rows.json").read_text())
    argv = {"gain": ["gain", str(tree), "--network", "resnet18", "--where", "train_fraction=null"],
            "fraction": ["fraction", str(tree), "--dataset", "gtsrb", "--network", "resnet18"], "curves": ["curves", str(run)]}  # fmt: skip
    for name, args in argv.items():  # each in a fresh interpreter: matplotlib's global state is not the test session's
        proc = subprocess.run([sys.executable, str(REPO / "tools" / "plots.py"), *args, "-o", str(tmp_path / f"{name}.png")], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    hashes = {n: hashlib.sha256((tmp_path / f"{n}.png").read_bytes()).hexdigest() for n in argv}
    assert hashes == json.loads((GOLDEN / "figures.json").read_text())
