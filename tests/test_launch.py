"""runner/launch.py: the one launcher of reproduce, the search and the comparison; its children die with it."""
from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO

from tools import config_search, sweep

GOLDEN = REPO / "tests" / "golden"
CHILD = """
import os, signal, sys, time
sys.path.insert(0, {repo!r})
from pathlib import Path
from runner import launch
log = Path(sys.argv[1])
# the run: says its pid, stops on SIGTERM writing a marker (as a run writes its checkpoint), exit 75
run = "import os, signal, sys, time; print(os.getpid(), flush=True); signal.signal(signal.SIGTERM, lambda *a: (open(sys.argv[1], 'w').write('stopped'), sys.exit(75))); time.sleep(120)"
with launch.forwarding_signals():
    proc = launch.start([sys.executable, "-c", run, str(log.with_suffix(".stopped"))], log)
    print("started", flush=True)
    print("ended", launch.wait(proc), flush=True)  # the run's exit, waited for before the launcher stops
"""


def started_tree(tmp_path: Path) -> tuple[subprocess.Popen, int, Path]:
    script = tmp_path / "parent.py"
    script.write_text(CHILD.format(repo=str(REPO)))
    log = tmp_path / "run.log"
    parent = subprocess.Popen([sys.executable, str(script), str(log)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert parent.stdout.readline().strip() == "started"
    for _ in range(200):
        lines = [x for x in log.read_text().splitlines() if x.isdigit()] if log.is_file() else []
        if lines:
            return parent, int(lines[0]), log
        time.sleep(0.05)
    raise AssertionError("the run did not start")


def gone(pid: int, seconds: float = 20.0) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_run_dies_with_its_launcher_killed_by_sigkill(tmp_path):
    parent, child, log = started_tree(tmp_path)
    parent.kill()
    parent.wait()
    assert gone(child), "the run outlived its launcher"
    assert log.with_suffix(".stopped").read_text() == "stopped"  # it got SIGTERM: a checkpoint, not a kill


def test_sigterm_to_the_launcher_is_forwarded_and_it_waits_for_the_run(tmp_path):
    parent, child, log = started_tree(tmp_path)
    os.kill(parent.pid, signal.SIGTERM)
    out, err = parent.communicate(timeout=60)
    assert "Interrupted: stopped by SIGTERM" in err and "ended 75" in out  # the run stopped with its checkpoint, waited for
    assert gone(child) and log.with_suffix(".stopped").read_text() == "stopped"


def test_reproduce_writes_the_commands_and_the_array_it_wrote_before(tmp_path):
    """Print and SLURM output of tools/reproduce.py equal what main's own launchers wrote (tests/golden)."""
    res = tmp_path / "res"
    argv = ["--datasets", "cifar10", "--networks", "resnet18", "--methods", "ilm_vp", "linear_probing", "--seeds", "1", "2",
            "--results-path", str(res), "--data-path", str(tmp_path / "data"), "--python", "PY"]  # fmt: skip

    def norm(text: str) -> str:  # the folder's hash holds the data folder's path, another temporary one then
        return re.sub(r"seed(\d)-[0-9a-f]{8}", r"seed\1-HASH", text.replace(str(tmp_path), "<TMP>").replace(str(REPO), "<REPO>"))

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert sweep.main([*argv, "--launcher", "print", "--", "--epochs", "2"]) == 0
        assert sweep.main([*argv, "--launcher", "slurm", "--slurm-name", "g", "--", "--epochs", "2"]) == 0
    assert norm(out.getvalue()) == (GOLDEN / "reproduce_print.txt").read_text()
    assert norm((res / "slurm" / "g.sbatch").read_text()) == (GOLDEN / "reproduce_slurm.sbatch").read_text()
    assert norm((res / "slurm" / "g.jobs.tsv").read_text()) == norm((GOLDEN / "reproduce_slurm.jobs.tsv").read_text())


def test_the_search_writes_the_same_array_as_reproduce(tmp_path, cifar_root):
    with contextlib.redirect_stderr(io.StringIO()):
        assert config_search.main(["--dataset", "cifar10", "--data-path", str(cifar_root), "--results-path", str(tmp_path / "s"),
                                   "--launcher", "slurm", "--array-tasks", "4", "--slurm-dir", str(tmp_path / "out")]) == 0  # fmt: skip
        assert sweep.main(["--datasets", "cifar10", "--methods", "ilm_vp", "--seeds", "1", "2", "3", "4", "--results-path", str(tmp_path / "r"),
                           "--launcher", "slurm", "--slurm-dir", str(tmp_path / "out"), "--array-limit", "4", "--slurm-name", "grid-of-four"]) == 0  # fmt: skip
    (searched,) = [p for p in (tmp_path / "out").glob("*.sbatch") if p.name != "grid-of-four.sbatch"]

    def shape(path: Path) -> list[str]:  # the script without its name and jobs file
        return [line for line in path.read_text().replace(path.stem, "NAME").splitlines()]

    assert shape(searched) == shape(tmp_path / "out" / "grid-of-four.sbatch")
    lines = searched.with_suffix(".jobs.tsv").read_text().splitlines()
    assert [line.split("\t")[1].split("--worker-index ")[1].split()[0] for line in lines] == ["0", "1", "2", "3"]
