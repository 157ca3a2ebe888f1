"""runner/records.py on hand-made run folders: finished, running, stopped, failed, subset, mixed settings."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tool_fixtures import fake_run

from runner import records
from runner.run_lock import RunLock


def test_a_finished_run_exposes_every_key_of_its_files(tmp_path):
    run = fake_run(tmp_path, "ilm_vp", "cifar10", "resnet18", 1, 60.0, epochs=2, losses=True)
    results = json.loads((run / "results.json").read_text())
    results["test_top5_acc"] = 91.0  # a key the engine may add: there without a change here
    (run / "results.json").write_text(json.dumps(results))
    (record,) = records.find_runs(tmp_path)
    assert record.status == records.FINISHED and record.results["test_top5_acc"] == 91.0 and record.results["best_test_acc"] == 60.0
    assert [r["epoch"] for r in record.metrics] == [1, 2] and record.metrics[0]["train_loss"] == 2.1
    assert (record.method, record.dataset, record.network, record.seed, record.epochs) == ("ilm_vp", "cifar10", "resnet18", 1, 2)
    assert record.epochs_done == 2 and record.differences(2) == [] and record.differences(200) == ["2/200 epochs"]


def test_stopped_failed_and_new(tmp_path):
    stopped = fake_run(tmp_path, "ilm_vp", "cifar10", "resnet18", 1, None, done=2)
    failed = fake_run(tmp_path, "ilm_vp", "cifar10", "resnet18", 2, None, done=0)
    short = fake_run(tmp_path, "ilm_vp", "cifar10", "resnet18", 3, 50.0, epochs=2)
    assert records.read_run(stopped).status == records.STOPPED and records.read_run(stopped).epochs_done == 2
    assert records.read_run(stopped).results is None
    assert records.read_run(failed).status == records.FAILED
    assert records.run_status(short, 5) == records.STOPPED  # results for another budget: not this run's end
    assert records.run_status(short, 2) == records.FINISHED and records.read_finished(short, 5) is None
    assert records.run_status(tmp_path / "nowhere") == records.NEW


def test_a_run_whose_lock_a_live_process_holds_is_running(tmp_path):
    run = fake_run(tmp_path, "ilm_vp", "cifar10", "resnet18", 1, None, done=1)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, '.'); from runner.run_lock import RunLock; from pathlib import Path; "
                               f"RunLock.acquire(Path({str(records.lock_path(run))!r}), Path('.')); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        assert records.read_run(run).status == records.RUNNING
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert records.read_run(run).status == records.STOPPED  # the lock went with its process
    lock = RunLock.acquire(records.lock_path(run), run)  # this process's own lock counts too
    try:
        assert records.lock_held(run)
    finally:
        lock.release()


def test_subset_and_mixed_settings(tmp_path):
    smoke = fake_run(tmp_path, "ilm_vp", "cifar10", "resnet18", 1, 12.5, epochs=1, max_train_samples=128, max_test_samples=64)
    fraction = fake_run(tmp_path, "ilm_vp", "cifar10", "resnet18", 1, 30.0, epochs=5, train_fraction=0.25)
    full = fake_run(tmp_path, "ilm_vp", "cifar10", "resnet18", 1, 60.0, epochs=5)
    found = {r.path: r for r in records.find_runs(tmp_path)}
    assert set(found) == {smoke, fraction, full}  # three settings of one method, dataset and seed: three records
    assert found[smoke].subset() == {"max_train_samples": 128, "max_test_samples": 64}
    assert found[smoke].differences(5) == ["train 128", "test 64", "1/5 epochs"]
    assert found[fraction].differences(5) == ["fraction 0.25"] and found[full].differences(5) == []


def test_folders_without_a_readable_config_and_hidden_ones_are_not_runs(tmp_path):
    fake_run(tmp_path, "ilm_vp", "cifar10", "resnet18", 1, 60.0)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "config.json").write_text("{not json")
    hidden = tmp_path / "ilm_vp" / ".seed1-x.previous"
    hidden.mkdir(parents=True)
    (hidden / "config.json").write_text((next(tmp_path.rglob("seed1-*/config.json"))).read_text())
    assert len(records.find_runs(tmp_path)) == 1
    assert records.read_metrics(tmp_path / "nowhere") == [] and records.read_run(tmp_path / "junk") is None


def test_the_table_says_a_run_is_running(tmp_path):
    from tools import tables

    run = fake_run(tmp_path, "ilm_vp", "cifar10", "resnet18", 1, None, done=1)
    lock = RunLock.acquire(records.lock_path(run), run)
    try:
        cells = tables.build_cells(tables.collect_runs(tmp_path), None, [1])
        (line,) = tables.missing_report(cells)
        assert "seed 1 incomplete, running, 1/5 epochs" in line
    finally:
        lock.release()


def test_the_machine_a_run_computed_on_is_one_line_and_empty_for_an_older_run(tmp_path):
    older = fake_run(tmp_path, "ilm_vp", "cifar10", "resnet18", 1, 60.0, epochs=2)
    newer = fake_run(tmp_path, "ilm_vp", "cifar10", "resnet18", 2, 61.0, epochs=2)
    written = json.loads((newer / "config.json").read_text())
    written["hardware"] = {"cpu": "AMD EPYC", "cpu_capability": "AVX512", "threads": 2}
    (newer / "config.json").write_text(json.dumps(written))
    assert records.read_run(older).machine == "" and records.read_run(newer).machine == "AMD EPYC (AVX512, 2 threads)"
    assert records.machine_label({"cpu": "AMD EPYC", "cpu_capability": "AVX512", "threads": 16, "gpu": "NVIDIA H200", "cudnn": 91002}) == "NVIDIA H200"
