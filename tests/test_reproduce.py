"""tools/reproduce.py: grid expansion, run folders equal to the engine's, skip/resume, launchers."""
from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import TINY_NETWORK, tiny_args

from common.errors import UserError
from runner.cli import main as run_method
from tools import sweep as rp


def test_presets_expand_to_the_paper_grids():
    t1 = rp.PRESETS["table1"]
    jobs = rp.expand_grid(t1.datasets, t1.networks, t1.methods, t1.seeds, only_networks=t1.only_networks)
    assert len(jobs) == 13 * (3 * 4 + 1) * 3  # RLM-VP on ResNet-18 only
    assert {j.network for j in jobs if j.method == "rlm_vp"} == {"resnet18"}
    assert {j.network for j in jobs if j.method == "ilm_vp"} == {"resnet18", "resnet50", "instagram"}
    assert len(set(jobs)) == len(jobs)
    r18 = rp.PRESETS["table1-resnet18"]
    assert len(rp.expand_grid(r18.datasets, r18.networks, r18.methods, r18.seeds)) == 13 * 5 * 3
    clip = rp.PRESETS["clip"]
    clip_jobs = rp.expand_grid(clip.datasets, clip.networks, clip.methods, clip.seeds)
    assert len(clip_jobs) == 11 * 2 * 3 and {j.network for j in clip_jobs} == {None}
    assert all("--network" not in j.flags(Path("/r")) for j in clip_jobs)


def test_axis_flags_subset_a_preset_and_keep_its_restrictions():
    args = rp.build_cli().parse_args(["--preset", "table1", "--datasets", "cifar10", "--seeds", "1"])
    jobs = rp.jobs_from_args(args, ["--epochs", "3"])
    assert len(jobs) == 3 * 4 + 1
    assert all(j.extra == ("--epochs", "3") and j.seed == 1 and j.dataset == "cifar10" for j in jobs)
    frac = rp.jobs_from_args(rp.build_cli().parse_args(["--preset", "fraction", "--seeds", "1"]), [])
    assert sorted({j.train_fraction for j in frac}) == [0.1, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert "--train-fraction" in frac[0].flags(Path("/r"))
    with pytest.raises(UserError, match="--preset"):
        rp.jobs_from_args(rp.build_cli().parse_args(["--datasets", "cifar10"]), [])


def test_every_registered_method_has_its_script():
    from algorithms.methods import METHODS

    assert rp.find_script("clip_linear_probe").name == "linear_probe.py"  # runs main("clip_linear_probe")
    assert all(rp.find_script(method).is_file() for method in METHODS)


def test_unknown_method_and_bad_flags_are_user_errors():
    with pytest.raises(UserError, match="no script"):
        rp.method_config("no_such_method", [])
    with pytest.raises(UserError, match="does not accept"):
        rp.method_config("ilm_vp", ["--no-such-flag"])


def tiny_job(data: Path, seed: int = 1, *extra: str) -> rp.Job:
    flags = ("--data-path", str(data), "--epochs", "2", "--batch-size", "16", "--device", "cpu", *extra)
    return rp.Job("ilm_vp", "cifar10", TINY_NETWORK, seed, extra=flags)


@pytest.mark.slow
def test_planned_folder_is_the_engines_folder_and_finished_runs_are_skipped(tmp_path, cifar_root):
    results = tmp_path / "res"
    assert run_method("ilm_vp", tiny_args(results, cifar_root, "--seed", "1")) == 0
    (real,) = [p.parent for p in results.rglob("results.json")]
    (planned,) = rp.plan([tiny_job(cifar_root)], results)
    assert planned.run_dir == real and planned.status == rp.FINISHED
    other = rp.plan([tiny_job(cifar_root, 2)], results)[0]
    assert other.status == rp.NEW and other.run_dir != real and other.run_dir.name.startswith("seed2-")


def test_status_new_partial_finished(tmp_path, cifar_root):
    (p,) = rp.plan([tiny_job(cifar_root)], tmp_path)
    assert p.status == rp.NEW and "--resume" not in p.launch
    p.run_dir.mkdir(parents=True)
    (p.run_dir / "ckpt.pth").write_bytes(b"x")
    (p,) = rp.plan([tiny_job(cifar_root)], tmp_path)
    assert p.status == rp.PARTIAL and p.launch[-1] == "--resume" and "--resume" not in p.command
    (p.run_dir / "results.json").write_text(json.dumps({"epochs": 1}))  # fewer epochs than configured
    assert rp.plan([tiny_job(cifar_root)], tmp_path)[0].status == rp.PARTIAL
    (p.run_dir / "results.json").write_text(json.dumps({"epochs": 2}))
    assert rp.plan([tiny_job(cifar_root)], tmp_path)[0].status == rp.FINISHED


@pytest.mark.slow
def test_print_launcher_emits_parseable_commands_for_unfinished_runs(tmp_path, cifar_root, capsys):
    argv = ["--datasets", "cifar10", "--networks", TINY_NETWORK, "--methods", "ilm_vp", "flm_vp", "--seeds", "1", "2",
            "--launcher", "print", "--results-path", str(tmp_path), "--",
            "--data-path", str(cifar_root), "--epochs", "2", "--device", "cpu"]  # fmt: skip
    (done,) = rp.plan([rp.Job("flm_vp", "cifar10", TINY_NETWORK, 2, extra=tuple(argv[-6:]))], tmp_path)
    done.run_dir.mkdir(parents=True)
    (done.run_dir / "results.json").write_text(json.dumps({"epochs": 2}))
    assert rp.main(argv) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 3 and "1 finished" in err
    for line in lines:
        words = shlex.split(line)
        assert Path(words[1]).is_file() and words[1].endswith(("ilm_vp.py", "flm_vp.py"))
        assert words[words.index("--results-path") + 1] == str(tmp_path)
        assert words[-2:] == ["--device", "cpu"]


def fake_python(tmp_path: Path) -> str:
    """An 'interpreter' that records its arguments and GPU, and fails for seed 2."""
    path = tmp_path / "fake_python"
    path.write_text('#!/bin/bash\necho "gpu=${CUDA_VISIBLE_DEVICES:-none} args=$*"\n[[ "$*" != *"--seed 2 "* ]]\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_local_launcher_reports_failures_and_runs_the_rest(tmp_path, cifar_root):
    jobs = [tiny_job(cifar_root, seed) for seed in (1, 2, 3)]
    planned = rp.plan(jobs, tmp_path / "res", python=fake_python(tmp_path))
    failures = rp.launch_local(planned, gpus=[])
    assert [(p.job.seed, code) for p, code in failures] == [(2, 1)]
    for p in planned:
        log = (p.run_dir / "launcher.log").read_text()
        assert f"--seed {p.job.seed} " in log and "gpu=none" in log
    planned = rp.plan(jobs, tmp_path / "res2", python=fake_python(tmp_path))
    rp.launch_local(planned, gpus=["3", "5"])
    used = {(p.run_dir / "launcher.log").read_text().split("gpu=")[1].split()[0] for p in planned}
    assert used <= {"3", "5"} and used


@pytest.mark.slow
def test_slurm_script_is_valid_bash_and_skips_or_resumes(tmp_path, cifar_root):
    jobs = [tiny_job(cifar_root, seed) for seed in (1, 2, 3)]
    planned = rp.plan(jobs, tmp_path / "res", python=fake_python(tmp_path))
    planned[0].run_dir.mkdir(parents=True)
    (planned[0].run_dir / "results.json").write_text(json.dumps({"epochs": 2}))
    planned = rp.plan(jobs, tmp_path / "res", python=fake_python(tmp_path))
    script, jobs_file = rp.write_slurm(planned, tmp_path / "slurm", "t1", sbatch=["--partition=gpu"])
    text = script.read_text()
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "#SBATCH --array=0-1%32" in text and "#SBATCH --partition=gpu" in text
    rows = [line.split("\t") for line in jobs_file.read_text().splitlines()]
    assert [Path(r[0]) for r in rows] == [p.run_dir for p in planned[1:]]
    assert all(shlex.split(r[1])[0] == fake_python(tmp_path) for r in rows)
    # preemption: SLURM signals the batch shell, which exec replaces by the run; a requeued task continues it
    assert "#SBATCH --signal=B:USR1@120" in text and "#SBATCH --requeue" in text and "#SBATCH --open-mode=append" in text
    assert 'eval "exec $command"' in text
    # run array task 1 (seed 3) as the scheduler would: one command starts or continues the run, then finished
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "1"}
    first = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert first.returncode == 0 and "--seed 3" in first.stdout
    assert first.stdout.splitlines()[0].endswith("--resume auto --requeue")
    planned[2].run_dir.mkdir(parents=True)
    (planned[2].run_dir / "results.json").write_text("{}")
    third = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert third.stdout.startswith("finished:")
    for p in planned:
        (p.run_dir).mkdir(parents=True, exist_ok=True)
        (p.run_dir / "results.json").write_text(json.dumps({"epochs": 2}))
    assert rp.write_slurm(rp.plan(jobs, tmp_path / "res"), tmp_path / "slurm", "t1") is None


def test_beyond_preset_runs_each_configuration_on_each_dataset_with_its_own_flags():
    beyond = rp.PRESETS["beyond"]
    jobs = rp.expand_variants(beyond)
    assert len(jobs) == len(beyond.variants) * 2 * 3 and len(set(jobs)) == len(jobs)
    dtd = next(j for j in jobs if j.dataset == "dtd10" and j.variant == "smm+blmplus")
    flags = dtd.flags(Path("/r"), "/data")
    assert flags[:6] == ["--dataset", "folder", "--data-path", "/data/dtd10", "--image-size", "128"]
    assert flags.count("--data-path") == 1 and flags[-2:] == ["--prompt", "smm"] and dtd.method == "blmplus_vp"
    cifar = next(j for j in jobs if j.dataset == "cifar10").flags(Path("/r"), "/data")
    assert cifar[:2] == ["--dataset", "cifar10"] and cifar[cifar.index("--data-path") + 1] == "/data"
    # every configuration parses, and each (configuration, dataset, seed) has its own run folder
    planned = rp.plan(jobs, Path("/r"), data_path="/data")
    assert len({p.run_dir for p in planned}) == len(jobs)
    assert all(rp.method_config(p.job.method, p.job.flags(Path("/r"), "/data")).epochs == 5 for p in planned[:3])


def test_variant_flags_select_configurations_and_methods_do_not_apply():
    args = rp.build_cli().parse_args(["--preset", "beyond", "--variants", "smm+ilm", "linear_probing", "--datasets", "dtd10", "--seeds", "2"])
    jobs = rp.jobs_from_args(args, ["--epochs", "1"])
    assert [(j.variant, j.method, j.seed) for j in jobs] == [("smm+ilm", "smm_vp", 2), ("linear_probing", "linear_probing", 2)]
    assert all(j.extra[-2:] == ("--epochs", "1") for j in jobs)  # flags after -- come last and win
    with pytest.raises(UserError, match="no variant 'smm'"):
        rp.jobs_from_args(rp.build_cli().parse_args(["--preset", "beyond", "--variants", "smm"]), [])
    with pytest.raises(UserError, match="--variants"):
        rp.jobs_from_args(rp.build_cli().parse_args(["--preset", "beyond", "--methods", "ilm_vp"]), [])
    with pytest.raises(UserError, match="comparison preset"):
        rp.jobs_from_args(rp.build_cli().parse_args(["--preset", "table1", "--variants", "smm+ilm"]), [])


def test_a_few_shot_preset_redraws_the_shots_with_each_seed():
    preset = rp.Preset("few-shot", ("dtd10",), ("efficientnet_lite0",), variants=(rp.Variant("x", "ilm_vp", ("--shots", "16")),), seed_subsets=True)
    flags = [j.flags(Path("/r")) for j in rp.expand_variants(preset)]
    assert [f[f.index("--subset-seed") + 1] for f in flags] == ["1", "2", "3"]


def test_the_few_shot_preset_runs_16_shots_of_dtd10_per_seed():
    jobs = rp.expand_variants(rp.PRESETS["beyond-fewshot"])
    assert {j.dataset for j in jobs} == {"dtd10"} and len(jobs) == 3 * 3
    flags = jobs[0].flags(Path("/r"), "/data")
    assert flags[flags.index("--shots") + 1] == "16" and flags[flags.index("--subset-seed") + 1] == flags[flags.index("--seed") + 1]
    assert jobs[0].variant == rp.BEYOND_FEWSHOT_BEST and "linear_probing" in {j.variant for j in jobs}


def entry_python(tmp_path: Path) -> str:
    """An 'interpreter' that runs the method script's main with the test network registered."""
    import sys

    path = tmp_path / "entry_python"
    entry = Path(__file__).resolve().parent / "torchrun_entry.py"
    path.write_text(f'#!/bin/bash\nexec {shlex.quote(sys.executable)} {shlex.quote(str(entry))} ilm_vp "${{@:2}}"\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_a_run_launched_beside_another_gives_the_results_it_gets_alone(tmp_path, cifar_root):
    """--runs-per-gpu 2 on the CPU: two processes at once; seed 1's results equal its run alone."""
    python = entry_python(tmp_path)
    alone = rp.plan([tiny_job(cifar_root, 1, "--prompt-init", "randn")], tmp_path / "alone", python=python)
    assert rp.launch_local(alone, gpus=[], runs_per_gpu=1) == []
    jobs = [tiny_job(cifar_root, seed, "--prompt-init", "randn") for seed in (1, 2, 1)]  # seed 1 twice: one folder, run once
    shared = rp.plan(jobs, tmp_path / "shared", python=python)
    assert rp.launch_local(shared, gpus=[], runs_per_gpu=2) == []
    assert "VP_RUNS_PER_GPU" not in os.environ
    assert (shared[0].run_dir / "launcher.log").read_text().count("$ ") == 1  # the repeat did not start
    timing = {"total_seconds", "mean_epoch_seconds", "peak_memory_mb"}  # measurements, not results

    def results(run_dir: Path) -> dict:
        return {k: v for k, v in json.loads((run_dir / "results.json").read_text()).items() if k not in timing}

    assert shared[0].run_dir.name == alone[0].run_dir.name
    assert results(shared[0].run_dir) == results(alone[0].run_dir)
    rows = [[json.loads(line) for line in (p.run_dir / "metrics.jsonl").read_text().splitlines()] for p in (alone[0], shared[0])]
    for a, b in zip(*rows):
        assert (a["train_loss"], a["test_acc"], a["mapping_changes"]) == (b["train_loss"], b["test_acc"], b["mapping_changes"])
    assert results(shared[1].run_dir)["seed"] == 2


def test_under_slurm_only_training_runs_get_resume_auto_and_requeue(tmp_path):
    def planned(method: str) -> rp.PlannedJob:
        job = rp.Job(method, "cifar10", None, 1)
        return rp.PlannedJob(job, tmp_path / method, rp.NEW, ["python", f"{method}.py"], ["python", f"{method}.py"])

    assert rp.slurm_command(planned("ilm_tp_vp")) == ["python", "ilm_tp_vp.py", "--resume", "auto", "--requeue"]
    assert rp.slurm_command(planned("clip_linear_probe")) == ["python", "clip_linear_probe.py"]  # no epochs: nothing to resume
