"""A sweep's jobs, the run folder each writes (computed by the method's own parser), and its status."""
from __future__ import annotations

import importlib.util
import itertools
import shlex
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import cfg
from algorithms.methods import FAMILIES, METHODS, get_method
from algorithms.settings import RunConfig
from common.errors import UserError
from runner.config import build_parser, config_from_args
from runner.devices import planned_arithmetic
from runner.launch import Task
from runner.records import FINISHED, NEW, RUNNING, STOPPED
from runner.records import run_status as record_status
from tools.sweep.presets import Preset


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


PARTIAL = "partial"  # a checkpoint to continue: launched with --resume


def run_status(run_dir: Path, epochs: int) -> str:
    """finished: results.json for all epochs; partial: a checkpoint to resume; new: neither (:mod:`runner.records`)."""
    status = record_status(run_dir, epochs)
    if status == FINISHED:
        return FINISHED
    return PARTIAL if status == STOPPED or (status == RUNNING and (run_dir / "ckpt.pth").is_file()) else NEW


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

    def task(self) -> Task:
        """What the launcher runs: the command (with --resume where partial), its log in the run folder."""
        return Task(self.label, tuple(self.launch), self.run_dir / "launcher.log", self.run_dir)


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




# what a training run's command gets under SLURM: one command for the first start and every requeue
SLURM_RESUME = ["--resume", "auto", "--requeue"]


def slurm_command(p: PlannedJob) -> list[str]:
    """The job's command under SLURM: with :data:`SLURM_RESUME` where the method trains epochs."""
    trains = FAMILIES[get_method(p.job.method).family].trains_epochs
    return p.command + SLURM_RESUME if trains else p.command
