#!/usr/bin/env python
"""Run a grid of experiments (datasets x networks x methods x seeds) with one command.

    python tools/reproduce.py --preset table1                         # all of Table 1, here
    python tools/reproduce.py --preset table1 --launcher slurm        # a job-array script
    python tools/reproduce.py --preset clip --launcher print          # the shell commands
    python tools/reproduce.py --preset beyond --data-path /data      # prompts beyond ILM/BLM (docs/beyond.md)
    python tools/reproduce.py --datasets cifar10 --networks efficientnet_lite0 \\
        --methods ilm_vp flm_vp --seeds 1 2 -- --epochs 5 --max-train-samples 500

A comparison preset (``beyond``) lists *variants* instead of methods: each a label, a method
script and its flags, run on every dataset of the preset with that dataset's own flags.

Flags after ``--`` go unchanged to every run. Each job's run folder is computed with the
method's own argument parser and :meth:`RunConfig.run_path` — exactly the folder the run will
write — so the same settings always land in the same folder: finished runs are skipped, runs
with a checkpoint but no ``results.json`` are continued with ``--resume``, and a sweep can be
started again at any time.
"""
from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cfg  # noqa: E402
from algorithms.methods import FAMILIES, METHOD_CHOICES, METHODS, get_method  # noqa: E402
from algorithms.settings import RunConfig
from common import progress  # noqa: E402
from common.errors import UserError  # noqa: E402
from data.registry import DATASETS  # noqa: E402
from models.networks import NETWORKS  # noqa: E402
from runner.config import build_parser, config_from_args, name_type, split_passthrough, tool_parser  # noqa: E402
from runner.devices import planned_arithmetic  # noqa: E402
from runner.gpu_share import RUN_MEMORY_GIB, distinct, resolve_runs_per_gpu, run_environment, run_in_slots, runs_per_gpu_value, slots  # noqa: E402

# The 13 datasets of Table 1 (Chen et al., CVPR 2023), in the paper's order.
TABLE1_DATASETS = (
    "flowers102", "dtd", "ucf101", "food101", "gtsrb", "eurosat", "oxfordpets",
    "stanfordcars", "sun397", "cifar10", "cifar100", "svhn", "abide",
)  # fmt: skip
TABLE1_NETWORKS = ("resnet18", "resnet50", "instagram")
CNN_METHODS = ("ilm_vp", "flm_vp", "rlm_vp", "linear_probing", "full_finetune")
# The CLIP table of the same paper (ViT-B/32): VP + one template vs VP + templates chosen by ILM.
CLIP_DATASETS = (
    "flowers102", "dtd", "ucf101", "food101", "svhn", "eurosat", "stanfordcars",
    "sun397", "cifar10", "imagenet-r", "imagenet-sketch",
)  # fmt: skip
CLIP_METHODS = ("ilm_tp_vp", "single_tp_vp")
# The paper reports mean and std over 3 runs without naming the seeds; these are ours.
PAPER_SEEDS = (1, 2, 3)


@dataclass(frozen=True)
class Variant:
    """One configuration of a comparison: a label, the method script and its flags."""

    label: str
    method: str
    flags: tuple[str, ...] = ()
    reference: bool = False  # a reference line (linear probing), not a contender


@dataclass(frozen=True)
class Preset:
    description: str
    datasets: tuple[str, ...]
    networks: tuple[str | None, ...]  # None: the method picks its own model (CLIP)
    methods: tuple[str, ...] = ()
    seeds: tuple[int, ...] = PAPER_SEEDS
    train_fractions: tuple[float | None, ...] = (None,)
    only_networks: dict[str, tuple[str, ...]] = field(default_factory=dict)  # method -> allowed networks
    # a comparison: configurations (instead of methods) on every dataset
    variants: tuple[Variant, ...] = ()
    # dataset label -> its flags ("{data}" stands for the sweep's --data-path); default --dataset LABEL
    dataset_flags: dict[str, tuple[str, ...]] = field(default_factory=dict)
    common_flags: tuple[str, ...] = ()  # every run's flags, before the variant's own
    seed_subsets: bool = False  # --subset-seed follows --seed (the few-shot protocol redraws the shots per seed)

    def variant(self, label: str) -> Variant:
        for v in self.variants:
            if v.label == label:
                return v
        raise UserError(f"preset has no variant {label!r}; choose from {', '.join(v.label for v in self.variants)}")


# The comparison of docs/beyond.md: EfficientNet-Lite0 (the ImageNet network with weights offline)
# on a class-balanced CIFAR-10 subset (1000 train, 500 test, 500 validation) and on DTD-10 at
# 128 px, 5 epochs of the paper's schedule, batch 64; every prompt also with TrivialAugment (+ta).
# About 45 minutes per seed on a 2-core CPU (30 runs of 1-2 minutes); the few-shot preset about 5 minutes.
BEYOND_DATASETS = {
    "cifar10": ("--dataset", "cifar10", "--max-train-samples", "1000", "--max-test-samples", "500"),
    "dtd10": ("--dataset", "folder", "--data-path", "{data}/dtd10", "--image-size", "128"),
}
BEYOND_COMMON = ("--epochs", "5", "--batch-size", "64", "--val-fraction", "0.1")
BEYOND_PROMPTS = (
    Variant("pad+ilm", "ilm_vp", ("--prompt", "pad")),
    Variant("pad+blmplus", "blmplus_vp", ("--prompt", "pad")),
    Variant("watermark+ilm", "ilm_vp", ("--prompt", "watermark")),
    Variant("smm+ilm", "smm_vp"),
    Variant("smm+blmplus", "blmplus_vp", ("--prompt", "smm")),
    Variant("lowrank+ilm", "ilm_vp", ("--prompt", "lowrank")),
    Variant("pad@192+ilm", "ilm_vp", ("--prompt", "pad", "--input-size", "192")),
)
# ACAVP (acavp_vp: SGD, cosine, FLM) with TrivialAugment (its default) and with the same crop and
# flip without it
BEYOND_ACAVP = (
    Variant("acavp+flm", "acavp_vp", ("--augment", "crop_flip")),
    Variant("acavp+flm+ta", "acavp_vp", ("--augment", "trivialaugment")),
)
BEYOND_VARIANTS = (
    *BEYOND_PROMPTS,
    *(Variant(f"{v.label}+ta", v.method, (*v.flags, "--augment", "trivialaugment")) for v in BEYOND_PROMPTS),
    *BEYOND_ACAVP,
    Variant("linear_probing", "linear_probing", reference=True),
)
BEYOND_BY_LABEL = {v.label: v for v in BEYOND_VARIANTS}
# The few-shot protocol on DTD-10 for the comparison's best configuration (by the mean
# validation-selected accuracy on DTD-10 over the three seeds), beside ILM-VP and linear probing.
BEYOND_FEWSHOT_BEST = "pad+blmplus"


PRESETS: dict[str, Preset] = {
    "table1": Preset(
        "Table 1: 13 datasets x ResNet-18/ResNet-50/Instagram ResNeXt x ILM/FLM/RLM-VP, LP, FF x 3 seeds "
        "(RLM-VP on ResNet-18 only, as in the paper)",
        TABLE1_DATASETS, TABLE1_NETWORKS, CNN_METHODS, only_networks={"rlm_vp": ("resnet18",)},
    ),  # fmt: skip
    "table1-resnet18": Preset("Table 1, ResNet-18 columns only", TABLE1_DATASETS, ("resnet18",), CNN_METHODS),
    "clip": Preset("CLIP table: 11 datasets x ILM-TP-VP, single-template TP-VP x 3 seeds", CLIP_DATASETS, (None,), CLIP_METHODS),
    "fraction": Preset(
        "Figure 3: ILM-VP vs FLM-VP on GTSRB (ResNet-18) against the fraction of training data",
        ("gtsrb",), ("resnet18",), ("ilm_vp", "flm_vp"), train_fractions=(0.1, 0.2, 0.4, 0.6, 0.8, 1.0),
    ),  # fmt: skip
    "beyond": Preset(
        "docs/beyond.md: pad/watermark/SMM/low-rank/rescaled prompts with ILM and BLM+, ACAVP, TrivialAugment, linear probing; "
        "EfficientNet-Lite0 on CIFAR-10 (1000/500) and DTD-10 (128 px), 5 epochs x 3 seeds",
        tuple(BEYOND_DATASETS), ("efficientnet_lite0",), variants=BEYOND_VARIANTS,
        dataset_flags=BEYOND_DATASETS, common_flags=BEYOND_COMMON,
    ),  # fmt: skip
    "beyond-fewshot": Preset(
        f"docs/beyond.md: 16 shots per class on DTD-10, redrawn with each seed, for {BEYOND_FEWSHOT_BEST} beside pad+ilm and linear probing",
        ("dtd10",), ("efficientnet_lite0",),
        variants=tuple(BEYOND_BY_LABEL[label] for label in dict.fromkeys((BEYOND_FEWSHOT_BEST, "pad+ilm", "linear_probing"))),
        dataset_flags=BEYOND_DATASETS, common_flags=(*BEYOND_COMMON, "--shots", "16"), seed_subsets=True,
    ),  # fmt: skip
}


# ---------------------------------------------------------------------------------------------
# Jobs and their run folders


@dataclass(frozen=True)
class Job:
    method: str
    dataset: str
    network: str | None
    seed: int
    train_fraction: float | None = None
    extra: tuple[str, ...] = ()
    variant: str | None = None  # a comparison preset's configuration label
    dataset_flags: tuple[str, ...] = ()  # instead of --dataset DATASET ("{data}": the data root)
    subset_seed: bool = False  # add --subset-seed SEED

    def flags(self, results_path: Path, data_path: str | None = None) -> list[str]:
        root = str(data_path) if data_path else str(cfg.DATA_PATH)
        own = [f.replace("{data}", root) for f in self.dataset_flags]
        flags = own or ["--dataset", self.dataset]
        if self.network is not None:
            flags += ["--network", self.network]
        flags += ["--seed", str(self.seed)]
        if self.subset_seed:
            flags += ["--subset-seed", str(self.seed)]
        if self.train_fraction is not None:
            flags += ["--train-fraction", repr(self.train_fraction)]
        flags += ["--results-path", str(results_path)]
        if data_path and "--data-path" not in own:
            flags += ["--data-path", str(data_path)]
        return flags + list(self.extra)


def expand_grid(
    datasets, networks, methods, seeds, train_fractions=(None,), extra=(), only_networks: dict | None = None
) -> list[Job]:
    """Every combination, method-major so one method's runs sit together; ``only_networks``
    limits a method to some networks (RLM-VP on ResNet-18 in Table 1)."""
    jobs = []
    for method, dataset, network, fraction, seed in itertools.product(methods, datasets, networks, train_fractions, seeds):
        allowed = (only_networks or {}).get(method)
        if allowed is not None and network not in allowed:
            continue
        jobs.append(Job(method, dataset, network, int(seed), fraction, tuple(extra)))
    return jobs


def expand_variants(preset: Preset, datasets=None, networks=None, seeds=None, labels=None, extra=()) -> list[Job]:
    """A comparison preset's runs: variant x dataset x network x seed, variant-major; each run gets
    its dataset's flags, the preset's common flags, the variant's flags, then ``extra``."""
    chosen = [preset.variant(label) for label in labels] if labels else list(preset.variants)
    jobs = []
    for variant, dataset, network, seed in itertools.product(chosen, datasets or preset.datasets, networks or preset.networks, seeds or preset.seeds):
        flags = (*preset.common_flags, *variant.flags, *extra)
        jobs.append(Job(variant.method, dataset, network, int(seed), None, flags, variant.label, preset.dataset_flags.get(dataset, ()), preset.seed_subsets))
    return jobs


def find_script(method: str) -> Path:
    """``experiments/<group>/<method>.py``, else the script that runs ``main("<method>")``
    (``experiments/clip/linear_probe.py`` runs ``clip_linear_probe``): the script researchers run by hand."""
    found = sorted((cfg.REPO_ROOT / "experiments").glob(f"*/{method}.py"))
    found = found or [p for p in sorted((cfg.REPO_ROOT / "experiments").glob("*/*.py")) if f'main("{method}")' in p.read_text()]
    if not found:
        raise UserError(f"no script experiments/*/{method}.py (nor one running main({method!r})) for method {method!r}")
    return found[0]


def ensure_registered(method: str) -> None:
    """Methods registered outside ``algorithms.methods`` are registered by importing their script
    (the scripts only call ``main`` under ``__main__``)."""
    if method in METHODS:
        return
    script = find_script(method)
    spec = importlib.util.spec_from_file_location(f"_vp_script_{method}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    get_method(method)  # a clear error if the script did not register it either


def method_config(method: str, argv: list[str]) -> RunConfig:
    """The :class:`RunConfig` the method's script would build from ``argv``."""
    ensure_registered(method)
    try:
        args = build_parser(method).parse_args(argv)
    except UserError as exc:  # the parser reports a bad flag as a UserError
        raise UserError(f"{method} does not accept the flags {shlex.join(argv)}: {exc}") from exc
    config = config_from_args(method, args)
    # the arithmetic joins a run's identity: plan it as the run will resolve it on this machine
    family = FAMILIES[get_method(method).family]
    return replace(config, arithmetic=planned_arithmetic(config.device, config.precision, family.cuda_precision))


FINISHED, PARTIAL, NEW = "finished", "partial", "new"


def run_status(run_dir: Path, epochs: int) -> str:
    """finished: results.json for all epochs; partial: a checkpoint to resume; new: neither."""
    results = run_dir / "results.json"
    if results.is_file():
        try:
            if json.loads(results.read_text()).get("epochs") == epochs:
                return FINISHED
        except (OSError, ValueError):
            pass
    return PARTIAL if (run_dir / "ckpt.pth").is_file() else NEW


@dataclass
class PlannedJob:
    job: Job
    run_dir: Path
    status: str
    command: list[str]  # without --resume
    launch: list[str]  # with --resume where the run is partial

    @property
    def label(self) -> str:
        head = f"{self.job.variant}: " if self.job.variant else ""
        return f"{head}{self.job.method}/{self.job.dataset}/{self.job.network or '-'}/{self.run_dir.name}"


def plan(jobs: list[Job], results_path: Path, python: str = sys.executable, data_path: str | None = None) -> list[PlannedJob]:
    planned = []
    for job in jobs:
        flags = job.flags(results_path, data_path)
        config = method_config(job.method, flags)
        run_dir = config.run_path()
        status = run_status(run_dir, config.epochs)
        command = [python, str(find_script(job.method)), *flags]
        planned.append(PlannedJob(job, run_dir, status, command, command + ["--resume"] if status == PARTIAL else command))
    return planned


# ---------------------------------------------------------------------------------------------
# Launchers


def visible_gpus() -> list[str]:
    """CUDA_VISIBLE_DEVICES if set, else every CUDA device; empty on a CPU-only machine."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def launch_local(planned: list[PlannedJob], gpus: list[str], runs_per_gpu: int = 1) -> list[tuple[PlannedJob, int]]:
    """Run the unfinished jobs, ``runs_per_gpu`` at a time on each GPU (that many at once on the CPU
    without GPUs), each its own process (:mod:`runner.gpu_share`); each job's output goes to
    ``<run folder>/launcher.log``. Two jobs of one run folder never run: the repeat is skipped.
    Returns the failures as (job, exit code)."""
    todo, repeats = distinct([p for p in planned if p.status != FINISHED], key=lambda p: p.run_dir)
    for p in repeats:
        progress.line(f"skipped {p.label}: the same run folder as an earlier job")

    def execute(p: PlannedJob, gpu: str | None) -> int:
        try:
            p.run_dir.mkdir(parents=True, exist_ok=True)
            with open(p.run_dir / "launcher.log", "a") as log:
                log.write(f"$ {shlex.join(p.launch)}\n")
                log.flush()
                env = run_environment(gpu, runs_per_gpu)
                return subprocess.run(p.launch, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cfg.REPO_ROOT).returncode
        except OSError as exc:
            progress.line(f"cannot start {p.label}: {exc}")
            return 127

    with progress.bar(total=len(todo), desc="runs", unit="run") as bar:

        def done(p: PlannedJob, code: int) -> None:
            if code != 0:
                progress.line(f"FAILED ({code}) {p.label}: see {p.run_dir / 'launcher.log'}")
            bar.update(1)

        return run_in_slots(todo, slots(gpus, runs_per_gpu), execute, done)


SLURM_TEMPLATE = """#!/bin/bash
#SBATCH --job-name={name}
#SBATCH --array=0-{last}%{limit}
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task={cpus}
#SBATCH --time={time}
#SBATCH --output={log_dir}/%A_%a.out
#SBATCH --open-mode=append
#SBATCH --signal=B:USR1@{warning}
#SBATCH --requeue
{extra}
# One array task per line of the jobs file: "<run folder><TAB><command>".
# A finished run is skipped; a training run's command holds --resume auto --requeue, so it starts
# or continues its run folder. SLURM sends USR1 {warning} s before the time limit (and TERM on
# preemption) to this shell, which exec has replaced by python: the run stops with a checkpoint,
# requeues this task and exits 75; the requeued task continues it. Resubmitting the array is safe.
set -euo pipefail
cd {repo}
line=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {jobs})
run_dir=${{line%%$'\\t'*}}
command=${{line#*$'\\t'}}
if [ -f "$run_dir/results.json" ]; then echo "finished: $run_dir"; exit 0; fi
echo "$command"
eval "exec $command"
"""
# what a training run's command gets under SLURM: one command for the first start and every requeue
SLURM_RESUME = ["--resume", "auto", "--requeue"]
SIGNAL_WARNING_S = 120  # USR1 this long before the time limit: time for the current epoch's checkpoint


def slurm_command(p: PlannedJob) -> list[str]:
    """The job's command under SLURM: with :data:`SLURM_RESUME` where the method trains epochs."""
    trains = FAMILIES[get_method(p.job.method).family].trains_epochs
    return p.command + SLURM_RESUME if trains else p.command


def write_slurm(
    planned: list[PlannedJob], out_dir: Path, name: str, *, limit: int = 32, cpus: int = 8, time: str = "24:00:00", sbatch: list[str] = ()
) -> tuple[Path, Path] | None:
    """Write ``<name>.jobs.tsv`` and ``<name>.sbatch`` for the unfinished jobs (None if there are none)."""
    todo = [p for p in planned if p.status != FINISHED]
    if not todo:
        return None
    out_dir = out_dir.resolve()
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    jobs = out_dir / f"{name}.jobs.tsv"
    jobs.write_text("".join(f"{p.run_dir}\t{shlex.join(slurm_command(p))}\n" for p in todo))
    script = out_dir / f"{name}.sbatch"
    script.write_text(
        SLURM_TEMPLATE.format(
            name=shlex.quote(name), last=len(todo) - 1, limit=limit, cpus=cpus, time=time,
            log_dir=out_dir / "logs", warning=SIGNAL_WARNING_S, extra="".join(f"#SBATCH {opt}\n" for opt in sbatch),
            repo=shlex.quote(str(cfg.REPO_ROOT)), jobs=shlex.quote(str(jobs)),
        )  # fmt: skip
    )
    return script, jobs


# ---------------------------------------------------------------------------------------------
# Command line


def dataset_label(text: str) -> str:
    """``--datasets``: a dataset name, or a dataset label of the comparison presets (``dtd10``)."""
    return text if text in BEYOND_DATASETS else name_type(DATASETS)(text)


def build_cli() -> argparse.ArgumentParser:
    p = tool_parser("Expand a grid of runs and launch, schedule or print them. Flags after -- go to every run.")
    presets = "\n".join(f"  {name}: {preset.description}" for name, preset in sorted(PRESETS.items()))
    p.add_argument("--preset", choices=sorted(PRESETS), metavar="NAME",
                   help=f"a named grid; the axis flags below replace its axes (default: none)\n{presets}")  # fmt: skip
    p.add_argument("--datasets", nargs="+", type=dataset_label, metavar="NAME",
                   help=DATASETS.help(f"datasets (default: the preset's; the comparison presets also name {', '.join(BEYOND_DATASETS)})"))  # fmt: skip
    p.add_argument("--networks", nargs="+", metavar="NAME",
                   help=NETWORKS.help("networks; '-' for a method's own model (CLIP) (default: the preset's, else resnet18)"))  # fmt: skip
    p.add_argument("--methods", nargs="+", metavar="NAME", help=METHOD_CHOICES.help("methods (default: the preset's)"))
    p.add_argument("--variants", nargs="+", metavar="LABEL",
                   help=f"a comparison preset (beyond): only these configurations (default: all): {', '.join(BEYOND_BY_LABEL)}")  # fmt: skip
    p.add_argument("--seeds", nargs="+", type=int, metavar="S", help=f"training seeds (default: the preset's, else {' '.join(map(str, PAPER_SEEDS))})")
    p.add_argument("--train-fractions", nargs="+", type=float, metavar="F", help="also sweep --train-fraction (default: the preset's, else none)")
    p.add_argument("--launcher", choices=["local", "slurm", "print"], default="local",
                   help="local: run here, --runs-per-gpu jobs per GPU; slurm: write a job array; print: the commands")  # fmt: skip
    p.add_argument("--results-path", default=None, metavar="DIR", help=f"results root passed to every run (default: {cfg.RESULTS_PATH})")
    p.add_argument("--data-path", default=None, metavar="DIR", help="data root passed to every run (default: each run's VP_DATA)")
    p.add_argument("--python", default=sys.executable, metavar="EXE", help="interpreter in the generated commands")
    p.add_argument("--gpus", nargs="*", metavar="ID", help="local: GPU ids to use (default: the visible ones)")
    p.add_argument("--runs-per-gpu", type=runs_per_gpu_value, default=1, metavar="N|auto",
                   help="local: runs at once on each GPU (on the CPU without GPUs: at once in all), each its own process;"
                        " auto: free memory / --run-memory-gib, 1 to 8 (1 without CUDA). Sharing never changes a run's result")  # fmt: skip
    p.add_argument("--run-memory-gib", type=float, default=RUN_MEMORY_GIB, metavar="GIB", help="local: one run's GPU memory, for --runs-per-gpu auto")
    g = p.add_argument_group("slurm")
    g.add_argument("--slurm-dir", default=None, metavar="DIR", help="where the .sbatch and .jobs.tsv go (default: <results>/slurm)")
    g.add_argument("--slurm-name", default=None, metavar="NAME", help="job name and file stem (default: the preset, or 'grid')")
    g.add_argument("--array-limit", type=int, default=32, metavar="N", help="array tasks running at once")
    g.add_argument("--cpus", type=int, default=8, metavar="N", help="CPUs per task")
    g.add_argument("--time", default="24:00:00", help="time limit per task")
    g.add_argument("--sbatch", action="append", default=[], metavar="OPTION", help="extra #SBATCH option, e.g. --sbatch=--partition=gpu (default: none)")
    return p


def jobs_from_args(args: argparse.Namespace, extra: list[str]) -> list[Job]:
    preset = PRESETS[args.preset] if args.preset else None
    if preset is None and not (args.datasets and args.methods):
        raise UserError("give --preset NAME or at least --datasets and --methods")
    if args.variants and not (preset and preset.variants):
        raise UserError("--variants selects configurations of a comparison preset (--preset beyond)")
    if preset is not None and preset.variants:
        if args.methods or args.train_fractions:
            raise UserError(f"preset {args.preset} is a list of configurations; choose them with --variants, not --methods/--train-fractions")
        return expand_variants(preset, args.datasets, args.networks, args.seeds, args.variants, extra)
    networks = args.networks or (preset.networks if preset else ("resnet18",))
    networks = tuple(None if n == "-" else n for n in networks)
    return expand_grid(
        args.datasets or preset.datasets,
        networks,
        args.methods or preset.methods,
        args.seeds or (preset.seeds if preset else PAPER_SEEDS),
        tuple(args.train_fractions) if args.train_fractions else (preset.train_fractions if preset else (None,)),
        extra,
        preset.only_networks if preset else None,
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, extra = split_passthrough(argv)
    try:
        args = build_cli().parse_args(own)
        results = Path(args.results_path).expanduser().resolve() if args.results_path else cfg.RESULTS_PATH
        planned = plan(jobs_from_args(args, extra), results, args.python, args.data_path)
        counts = {s: sum(p.status == s for p in planned) for s in (FINISHED, PARTIAL, NEW)}
        print(
            f"{len(planned)} runs: {counts[FINISHED]} finished (skipped), {counts[PARTIAL]} partial (resumed), {counts[NEW]} new",
            file=sys.stderr,
        )
        if args.launcher == "print":
            for p in planned:
                if p.status != FINISHED:
                    print(shlex.join(p.launch))
            return 0
        if args.launcher == "slurm":
            name = args.slurm_name or args.preset or "grid"
            out = Path(args.slurm_dir).expanduser() if args.slurm_dir else results / "slurm"
            written = write_slurm(planned, out, name, limit=args.array_limit, cpus=args.cpus, time=args.time, sbatch=args.sbatch)
            if written is None:
                print("nothing to run: every run is finished", file=sys.stderr)
            else:
                print(f"wrote {written[0]} and {written[1]}; submit with: sbatch {shlex.quote(str(written[0]))}", file=sys.stderr)
            return 0
        gpus = visible_gpus() if args.gpus is None else args.gpus
        runs_per_gpu = resolve_runs_per_gpu(args.runs_per_gpu, gpus, args.run_memory_gib)
        if runs_per_gpu > 1:
            print(f"{runs_per_gpu} runs at once per {'GPU' if gpus else 'machine (no GPU)'}", file=sys.stderr)
        failures = launch_local(planned, gpus, runs_per_gpu)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if failures:
        print(f"{len(failures)} run(s) failed:", file=sys.stderr)
        for p, code in failures:
            print(f"  exit {code}: {p.label}  (log: {p.run_dir / 'launcher.log'})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
