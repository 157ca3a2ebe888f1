"""tools/search.py: trials are ordinary runs, selection on validation, pruning, resuming, workers.

Most tests use tests/search_fake_run.py as the "interpreter" of the trials: it writes the run
folder the real script would write, from a table of accuracies, in milliseconds. One test runs
the real scripts on the tiny network.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, TINY_NETWORK

from tools import config_search as search
from tools.sweep import PRESETS, expand_variants, plan

optuna = pytest.importorskip("optuna")


def fake_python(tmp_path: Path, monkeypatch, runs: dict) -> tuple[str, Path]:
    path = tmp_path / "fake_python"
    path.write_text(f'#!/bin/bash\nexec {sys.executable} {REPO / "tests" / "search_fake_run.py"} "$@"\n')
    path.chmod(0o755)
    log = tmp_path / "launches.jsonl"
    monkeypatch.setenv("FAKE_RUNS", json.dumps(runs))
    monkeypatch.setenv("FAKE_LOG", str(log))
    return str(path), log


def launches(log: Path) -> list[list[str]]:
    return [json.loads(line)["argv"] for line in log.read_text().splitlines()] if log.is_file() else []


def base_args(results: Path, data: Path, python: str, *extra: str, network: str = TINY_NETWORK) -> list[str]:
    return ["--dataset", "cifar10", "--network", network, "--data-path", str(data), "--results-path", str(results),
            "--augments", "none", "--input-sizes", "own", "--python", python, "--poll", "0.05", *extra]  # fmt: skip


def load(results: Path):
    (db,) = list((results / "search").glob("*/study.db"))
    (name,) = optuna.study.get_all_study_names(f"sqlite:///{db}")
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}"), db.parent


@pytest.mark.slow
def test_bad_axis_value_and_empty_space_are_one_error_line(tmp_path, capsys):
    common = ["--dataset", "cifar10", "--results-path", str(tmp_path)]
    for argv in (common + ["--prompts", "pad", "nope"], common + ["--mappings"], common + ["--augments", "none", "wild"],
                 common + ["--", "--epochs", "3"], common + ["--val-fraction", "0"]):  # fmt: skip
        assert search.main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:"), (argv, err)
    assert not (tmp_path / "search").exists()


def test_space_is_built_from_the_registries_with_a_learning_rate_around_each_recipe():
    from algorithms.methods import METHODS, MethodSpec, register_method
    from models.prompts import PROMPT_CHOICES, PROMPTS, register_prompt
    from tools.config_search.space import build_space, recipe, recipe_lr

    space = build_space("full")
    assert set(space.prompts) == set(PROMPT_CHOICES.names()) and "blmplus" in space.mappings and space.lr_factor is not None
    assert "identity" not in space.mappings  # it cannot map 1000 source labels to fewer classes: no trial wasted on it
    assert recipe("pad", "blmplus").name == "blmplus_vp" and recipe("smm", "ilm").name == "smm_vp"
    assert recipe("watermark", "hungarian").name == "ilm_vp"  # no method of its own: the generic recipe
    assert recipe("watermark", "head").name == "head_vp" and recipe("watermark", "ilm").name == "ilm_vp"  # head_vp serves head trials only
    # a prompt registered with its own method (optimizer, lr) joins the space and keeps its recipe's lr
    register_prompt("fake_sgd_prompt", "a test prompt")(type("FakeSGD", (PROMPTS["watermark"],), {}))
    register_method(MethodSpec("fake_sgd_vp", "visual_prompt", "test", {"lr": 40.0, "optimizer": "sgd", "prompt": "fake_sgd_prompt"}))
    try:
        assert "fake_sgd_prompt" in build_space("autovp").prompts
        assert recipe("fake_sgd_prompt", "ilm").name == "fake_sgd_vp" and recipe_lr(recipe("fake_sgd_prompt", "ilm")) == 40.0
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
        from tools.config_search.space import suggest

        for _ in range(30):
            trial = study.ask()
            drawn = suggest(trial, build_space("full", prompts=["fake_sgd_prompt", "pad"]))
            lr = float(drawn.flags[drawn.flags.index("--lr") + 1])
            low, high = (40 / 3, 120) if trial.params["prompt"] == "fake_sgd_prompt" else (0.01 / 3, 0.03)
            assert low * 0.999 <= lr <= high * 1.001, (trial.params, lr)
            assert ("--input-size" in drawn.flags or "input_size" in trial.params) == (trial.params["prompt"] == "pad")
            study.tell(trial, 0.0)
    finally:
        from models.prompts.registry import PROMPT_DESCRIPTIONS

        del PROMPTS["fake_sgd_prompt"], PROMPT_DESCRIPTIONS["fake_sgd_prompt"], METHODS["fake_sgd_vp"]


def test_a_mapping_with_its_own_learning_rate_gets_an_axis_around_its_recipe():
    """``--mapping head`` declares ``--head-lr``: the full space searches it around head_vp's rate, only in head trials."""
    from algorithms.mappings.head import HeadOptions
    from common.options import options_from
    from tools.config_search.space import build_space, mapping_rates, recipe, suggest

    head_rate = options_from(HeadOptions, recipe("watermark", "head").defaults).head_lr
    assert mapping_rates("head", recipe("watermark", "head")) == [("head_lr", "--head-lr", head_rate)]
    assert mapping_rates("ilm", recipe("pad", "ilm")) == [] and mapping_rates("linear", recipe("pad", "linear")) == []  # no rate of its own
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(1))
    seen = set()
    for _ in range(20):
        trial = study.ask()
        drawn = suggest(trial, build_space("full", prompts=["watermark"], mappings=["head", "ilm"]))
        seen.add(trial.params["mapping"])
        if trial.params["mapping"] == "head":
            rate = float(drawn.flags[drawn.flags.index("--head-lr") + 1])
            assert head_rate / 3 * 0.999 <= rate <= head_rate * 3 * 1.001 and "head_lr_scale" in trial.params
        else:
            assert "--head-lr" not in drawn.flags and "head_lr_scale" not in trial.params
        study.tell(trial, 0.0)
    assert seen == {"head", "ilm"}
    plain = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(1))
    assert "--head-lr" not in suggest(plain.ask(), build_space("autovp", prompts=["watermark"], mappings=["head"])).flags  # no lr axis


def beyond_runs(results: Path, data: Path, values: dict[str, list[float]]) -> dict[str, list[Path]]:
    """Finished runs of the beyond preset on CIFAR-10 (seeds 1, 2) with these val-selected accuracies."""
    folders = {}
    for label, accs in values.items():
        planned = plan(expand_variants(PRESETS["beyond"], ["cifar10"], None, [1, 2], [label]), results, data_path=str(data))
        for p, acc in zip(planned, accs):
            p.run_dir.mkdir(parents=True)
            (p.run_dir / "results.json").write_text(json.dumps({"epochs": 5, "best_test_acc": acc + 5, "val_selected_test_acc": acc}))
        folders[label] = [p.run_dir for p in planned]
    return folders


@pytest.mark.slow
def test_the_choice_is_the_best_validation_not_test_and_the_table_is_the_run_folders(tmp_path, monkeypatch, cifar_root):
    runs = {
        "pad/ilm": {"val": [40, 60, 55, 50, 45], "test": [30, 35, 90, 90, 90], "seed_step": 1.0},  # best on validation
        "watermark/ilm": {"val": [50] * 5, "test": [80] * 5},  # best on test
        "linear_probing": {"val": [70] * 5, "test": [75, 76, 77, 78, 79], "seed_step": 2.0},
    }
    python, log = fake_python(tmp_path, monkeypatch, runs)
    results = tmp_path / "res"
    fixed = beyond_runs(results, cifar_root, {"pad+ilm": [20.0, 22.0], "smm+blmplus": [55.0, 57.0]})
    argv = base_args(results, cifar_root, python, "--prompts", "pad", "watermark", "--mappings", "ilm", "--trials", "4",
                     "--pruner", "none", "--final-seeds", "2", network="efficientnet_lite0") + ["--", "--batch-size", "64"]  # fmt: skip
    assert search.main(argv) == 0
    study, folder = load(results)
    assert {t.params["prompt"] for t in study.trials} == {"pad", "watermark"}  # both were tried
    report = json.loads((folder / "report.json").read_text())
    assert report["best_trial"]["params"]["prompt"] == "pad" and report["best_trial"]["validation"] == 60
    searched, best_fixed, probe = report["rows"]
    assert searched["val_selected"] == {"1": 35.0, "2": 36.0}  # the validation epoch's test accuracy, not 90
    assert best_fixed["label"].endswith("smm+blmplus") and best_fixed["val_selected"] == {"1": 55.0, "2": 57.0}
    assert probe["val_selected"] == {"1": 75.0, "2": 77.0}
    for row in (searched, probe):  # every number is the run folder's
        for seed, value in row["val_selected"].items():
            assert json.loads((Path(row["run_dirs"][seed]) / "results.json").read_text())["val_selected_test_acc"] == value
    assert [json.loads((d / "results.json").read_text())["val_selected_test_acc"] for d in fixed["smm+blmplus"]] == [55.0, 57.0]
    table = (folder / "report.md").read_text()
    assert "| 35.5 ± 0.7 | 1: 35.00, 2: 36.00 |" in table and "| 56.0 ± 1.4 |" in table and "| 76.0 ± 1.4 |" in table
    assert (folder / "history.png").is_file() and (folder / "prompt_mapping.png").is_file()
    # the trial of the chosen configuration on seed 1 was read, not trained again
    pad_seed1 = [a for a in launches(log) if "pad" in a and a[a.index("--seed") + 1] == "1" and "ilm_vp" not in a]
    assert len(pad_seed1) == 1


@pytest.mark.slow
def test_pruning_stops_a_trial_early(tmp_path, monkeypatch, cifar_root):
    runs = {"pad/ilm": {"val": [50, 60, 70], "sleep": 0.1}, "watermark/ilm": {"val": [10, 10, 10], "sleep": 0.6}}
    python, log = fake_python(tmp_path, monkeypatch, runs)
    results, storage = tmp_path / "res", f"sqlite:///{tmp_path / 'prune.db'}"
    study = optuna.create_study(storage=storage, study_name="prune", direction="maximize")
    study.enqueue_trial({"prompt": "pad", "mapping": "ilm", "augment": "none", "input_size": "own"})  # a good trial first
    study.enqueue_trial({"prompt": "watermark", "mapping": "ilm", "augment": "none"})
    argv = base_args(results, cifar_root, python, "--prompts", "pad", "watermark", "--mappings", "ilm", "--trials", "2", "--epochs", "3",
                     "--pruner", "halving", "--final-seeds", "0", "--storage", storage, "--study-name", "prune")  # fmt: skip
    assert search.main(argv) == 0
    first, second = optuna.load_study(study_name="prune", storage=storage).trials
    assert first.state.name == "COMPLETE" and second.state.name == "PRUNED" and second.user_attrs["pruned_at_epoch"] == 1
    run_dir = Path(second.user_attrs["run_dir"])
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(rows) < 3 and not (run_dir / "results.json").exists()  # the run was stopped, not finished
    assert (run_dir / "ckpt.pth").exists()  # and can be continued if the sampler asks for it again


@pytest.mark.slow
def test_a_run_at_its_last_epoch_is_complete_not_pruned(tmp_path, monkeypatch, cifar_root):
    runs = {"pad/ilm": {"val": [50]}, "watermark/ilm": {"val": [10]}}
    python, _ = fake_python(tmp_path, monkeypatch, runs)
    storage = f"sqlite:///{tmp_path / 'last.db'}"
    study = optuna.create_study(storage=storage, study_name="last", direction="maximize")
    study.enqueue_trial({"prompt": "pad", "mapping": "ilm", "augment": "none", "input_size": "own"})
    study.enqueue_trial({"prompt": "watermark", "mapping": "ilm", "augment": "none"})
    argv = base_args(tmp_path / "res", cifar_root, python, "--prompts", "pad", "watermark", "--mappings", "ilm", "--trials", "2", "--epochs", "1",
                     "--pruner", "halving", "--final-seeds", "0", "--storage", storage, "--study-name", "last")  # fmt: skip
    assert search.main(argv) == 0
    assert [(t.state.name, t.value) for t in optuna.load_study(study_name="last", storage=storage).trials] == [("COMPLETE", 50), ("COMPLETE", 10)]


@pytest.mark.slow
def test_a_failed_trial_is_recorded_with_its_reason_and_the_search_goes_on(tmp_path, monkeypatch, cifar_root, capsys):
    runs = {"pad/ilm": {"fail": "error: CUDA out of memory (a test)"}, "watermark/ilm": {"val": [30, 40]}}
    python, _ = fake_python(tmp_path, monkeypatch, runs)
    # 10 trials over two configurations: the chance that none draws the working one is 2^-10
    argv = base_args(tmp_path / "res", cifar_root, python, "--prompts", "pad", "watermark", "--mappings", "ilm", "--trials", "10",
                     "--epochs", "2", "--final-seeds", "0", "--workers", "2")  # fmt: skip
    assert search.main(argv) == 0
    study, _ = load(tmp_path / "res")
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert failed and all(t.user_attrs["error"] == "error: CUDA out of memory (a test)" for t in failed)
    assert any(t.state.name == "COMPLETE" for t in study.trials)
    assert "error: CUDA out of memory (a test)" in capsys.readouterr().err  # in the progress line


@pytest.mark.slow
def test_runs_per_gpu_runs_that_many_trials_at_once_and_tells_each_run(tmp_path, monkeypatch, cifar_root):
    """On the CPU (no GPU), --runs-per-gpu 2 is two trials at a time, each run told it shares its device with one more."""
    runs = {"default": {"val": [20, 30], "sleep": 0.5}}
    python, log = fake_python(tmp_path, monkeypatch, runs)
    argv = base_args(tmp_path / "res", cifar_root, python, "--prompts", "pad", "watermark", "smm", "lowrank", "--mappings", "ilm", "blm", "flm", "rlm",
                     "--trials", "4", "--epochs", "2", "--final-seeds", "0", "--runs-per-gpu", "2")  # fmt: skip
    assert search.main(argv) == 0
    starts = {r["pid"]: r for r in map(json.loads, Path(log).read_text().splitlines())}
    ends = {r["pid"]: r["t"] for r in map(json.loads, Path(f"{log}.ends").read_text().splitlines())}
    assert len(starts) >= 2 and {s["runs_per_gpu"] for s in starts.values()} == {"2"}
    # two runs were in flight together: one started before another had ended (each lasts >= 1 s)
    spans = [(starts[p]["t"], ends[p]) for p in starts if p in ends]
    assert any(a0 < b1 and b0 < a1 for i, (a0, a1) in enumerate(spans) for b0, b1 in spans[i + 1 :])


def worker(tmp_path: Path, argv: list[str], name: str) -> subprocess.Popen:
    err = open(tmp_path / f"{name}.err", "w")
    return subprocess.Popen([sys.executable, str(REPO / "tests" / "search_entry.py"), str(REPO / "tools" / "search.py"), *argv],
                            stdout=subprocess.DEVNULL, stderr=err, cwd=REPO, start_new_session=True)  # fmt: skip


@pytest.mark.slow
def test_two_workers_on_one_sqlite_storage_never_run_the_same_trial(tmp_path, monkeypatch, cifar_root):
    runs = {"default": {"val": [20, 30], "sleep": 0.2}}
    python, log = fake_python(tmp_path, monkeypatch, runs)
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    argv = base_args(tmp_path / "res", cifar_root, python, "--prompts", "pad", "watermark", "lowrank", "--mappings", "ilm", "rlm", "flm",
                     "--trials", "8", "--epochs", "2", "--final-seeds", "0", "--storage", storage, "--study-name", "shared")  # fmt: skip
    procs = [worker(tmp_path, argv + ["--worker-index", str(k)], f"w{k}") for k in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0], [(tmp_path / f"w{k}.err").read_text() for k in range(2)]
    started = [{int(line.split(":")[0].split()[1]) for line in (tmp_path / f"w{k}.err").read_text().splitlines() if line.startswith("trial ") and ": " in line
                and line.split(":")[0].split()[1].isdigit()} for k in range(2)]  # fmt: skip
    study = optuna.load_study(study_name="shared", storage=storage)
    assert started[0] and started[1], "both workers ran trials"
    assert not started[0] & started[1] and started[0] | started[1] == {t.number for t in study.trials}
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2
    assert 8 <= search.counted(study) <= 9  # the last trial of the other worker may still finish
    fresh = [a for a in launches(log) if "--resume" not in a]
    assert len(fresh) == len({tuple(a) for a in fresh})  # no run folder trained twice from scratch


@pytest.mark.slow
def test_a_killed_search_continues_the_same_study(tmp_path, monkeypatch, cifar_root):
    runs = {"default": {"val": [20, 30, 40], "sleep": 1.0}}
    python, log = fake_python(tmp_path, monkeypatch, runs)
    results = tmp_path / "res"
    argv = base_args(results, cifar_root, python, "--prompts", "pad", "watermark", "--mappings", "ilm", "rlm", "--trials", "3",
                     "--epochs", "3", "--final-seeds", "0", "--heartbeat", "1")  # fmt: skip
    proc = worker(tmp_path, argv, "killed")
    deadline = time.time() + 120
    while time.time() < deadline and not list(results.rglob("ckpt.pth")):  # the first epoch is done
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the search and its run, as a scheduler's kill would
    proc.wait()
    (killed,) = launches(log)
    assert list(results.rglob("ckpt.pth")), "the killed run had finished an epoch"
    time.sleep(3)  # past the heartbeat's grace period: the killed trial is stale
    assert search.main(argv) == 0
    study, _ = load(results)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 3 and states[0] == "FAIL" and "error" not in study.trials[0].user_attrs
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == 0]
    assert retried and retried[0].params == study.trials[0].params and retried[0].state.name == "COMPLETE"
    assert killed + ["--resume"] in launches(log)  # the killed run continued from its checkpoint


@pytest.mark.slow
def test_slurm_script_runs_workers_of_one_study(tmp_path, cifar_root):
    argv = ["--dataset", "cifar10", "--data-path", str(cifar_root), "--results-path", str(tmp_path), "--launcher", "slurm",
            "--array-tasks", "3", "--storage", "postgresql://db/vp", "--sbatch=--partition=gpu", "--", "--batch-size", "64"]  # fmt: skip
    assert search.main(argv) == 0
    (script,) = list((tmp_path / "search").glob("*/*.sbatch"))
    text = script.read_text()
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "#SBATCH --array=0-2" in text and "#SBATCH --partition=gpu" in text
    # the array of runner.launch: one line of the jobs file per task, here one worker of the study each
    commands = [line.split("\t")[1] for line in script.with_suffix(".jobs.tsv").read_text().splitlines()]
    for k, command in enumerate(commands):
        assert "--storage postgresql://db/vp" in command and "--no-final" in command and f"--worker-index {k}" in command
        assert "--launcher" not in command and command.split(" -- ")[1].startswith("--batch-size 64")
    assert len(commands) == 3


@pytest.mark.slow
def test_a_tiny_real_search_finishes_and_stores_its_study(tmp_path, cifar_root):
    python = tmp_path / "python"
    python.write_text(f'#!/bin/bash\nexec {sys.executable} {REPO / "tests" / "search_entry.py"} "$@"\n')
    python.chmod(0o755)
    results = tmp_path / "res"
    argv = base_args(results, cifar_root, str(python), "--prompts", "pad", "watermark", "--mappings", "ilm", "rlm", "--trials", "3",
                     "--epochs", "1", "--final-seeds", "1", "--no-linear-probe", "--poll", "0.2")  # fmt: skip
    argv += ["--", "--batch-size", "16", "--device", "cpu", "--max-train-samples", "40", "--scheduler", "constant"]
    assert search.main(argv) == 0
    study, folder = load(results)
    assert search.counted(study) == 3 and all(t.state.name == "COMPLETE" for t in study.trials)
    for t in study.trials:
        results_json = json.loads((Path(t.user_attrs["run_dir"]) / "results.json").read_text())
        assert t.value == results_json["best_val_acc"] and "--val-fraction 0.1" in t.user_attrs["command"]
    assert (folder / "report.md").is_file() and (folder / "history.png").is_file()


def test_help_lists_every_registered_prompt_and_mapping():
    from algorithms.mappings import MAPPING_CHOICES
    from models.prompts import PROMPT_CHOICES

    text = search.build_cli().format_help()
    assert all(f"{name}:" in text or f"{name} (also" in text for name in [*PROMPT_CHOICES.names(), *MAPPING_CHOICES.names()])


def test_prompt_mapping_figure_keeps_completed_and_only_pruned_pairs_apart(tmp_path):
    """Completed trials give a pair its colour (the best of them); a pair only pruned keeps its
    best intermediate value and last epoch; a pruned trial never lowers or raises a completed pair."""
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState, create_trial

    from tools.config_search.report import prompt_mapping_cells, prompt_mapping_figure

    dists = {"prompt": CategoricalDistribution(["pad", "smm"]), "mapping": CategoricalDistribution(["ilm", "linear"])}

    def trial(prompt, mapping, state, values, value=None):
        return create_trial(params={"prompt": prompt, "mapping": mapping}, distributions=dists, state=state,
                            value=value, intermediate_values=dict(enumerate(values, start=1)))  # fmt: skip

    trials = [
        trial("pad", "linear", TrialState.COMPLETE, [50, 60, 70], 70.0),
        trial("pad", "linear", TrialState.COMPLETE, [40, 50, 65], 65.0),
        trial("pad", "linear", TrialState.PRUNED, [90]),  # a better early number does not colour a completed pair
        trial("smm", "ilm", TrialState.PRUNED, [30, 45]),
        trial("smm", "ilm", TrialState.PRUNED, [52]),
    ]
    prompts, mappings, complete, pruned = prompt_mapping_cells(trials)
    assert (prompts, mappings) == (["pad", "smm"], ["ilm", "linear"])
    assert complete == {("pad", "linear"): 70.0}
    assert pruned[("smm", "ilm")] == (52, 2)
    study = optuna.create_study(direction="maximize")
    study.add_trials(trials)
    prompt_mapping_figure(study, tmp_path / "pm.png")
    assert (tmp_path / "pm.png").stat().st_size > 0
    only_pruned = optuna.create_study(direction="maximize")
    only_pruned.add_trials(trials[3:])
    prompt_mapping_figure(only_pruned, tmp_path / "pruned.png")  # nothing completed: still a figure, no error
    assert (tmp_path / "pruned.png").stat().st_size > 0
