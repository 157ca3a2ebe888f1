"""Entry point shared by every method script: flags in, one run out, one-line errors."""
from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

import cfg
from algorithms.engine import Trainer
from algorithms.methods import FAMILIES, get_method
from algorithms.outputs import BEST, CHECKPOINT
from algorithms.settings import RunConfig
from common.errors import UserError
from common.files import load_checkpoint
from common.seeding import seed_everything
from data.registry import SubsetSpec, load_dataset
from runner.config import build_parser, config_from_args
from runner.devices import setup_runtime, shutdown_runtime
from runner.run_dir import RunDir


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("torch", "torchvision", "timm", "open_clip_torch", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    versions["cuda"] = torch.version.cuda or "none"
    return versions


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(cfg.REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(cfg.REPO_ROOT), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def data_root_for(config: RunConfig) -> Path:
    if config.dataset == "folder" and not config.data_path:
        raise UserError("--dataset folder needs --data-path DIR holding train/<class>/* and test/<class>/*")
    return config.data_root


def run(config: RunConfig, argv: list[str] | None = None) -> dict:
    """Train (or evaluate) one configuration; returns the results dict."""
    spec = get_method(config.method)
    family = FAMILIES[spec.family]
    runtime = setup_runtime(config.device, config.precision)
    seed_everything(config.seed)
    run_dir = RunDir(config.run_path(), enabled=runtime.is_main)
    external_checkpoint = config.eval_only and config.checkpoint
    if not external_checkpoint:
        run_dir.prepare(resume=config.resume, overwrite=config.overwrite, eval_only=config.eval_only)
    runtime.barrier()  # every rank has checked the folder before rank 0 writes into it
    data = load_dataset(
        config.dataset,
        data_root_for(config),
        image_size=config.image_size,
        batch_size=config.batch_size,
        download=cfg.DOWNLOAD,
        subset=SubsetSpec(
            config.max_train_samples, config.max_test_samples, config.train_fraction, config.subset_seed,
            val_fraction=config.val_fraction, shots=config.shots,
        ),
    )
    if not family.trains_epochs:
        return solve(family, config, data, runtime, run_dir, argv)
    experiment = family.build(config, data, runtime)
    trainer = Trainer(config, experiment, data, runtime, run_dir)
    if config.eval_only:
        return evaluate_checkpoint(trainer, run_dir, config, write=not external_checkpoint)
    if config.resume:
        trainer.resume()
    else:
        write_config(run_dir, config, runtime, data, argv, {"trainable_params": trainer.num_trainable, **experiment.info})
    if runtime.is_main:
        print(f"run folder: {run_dir.path}", flush=True)
    return trainer.fit()


def write_config(run_dir: RunDir, config: RunConfig, runtime, data, argv: list[str] | None, resolved: dict) -> None:
    """``config.json``: every setting, what they resolved to, library versions, commit and command."""
    run_dir.write_json(
        "config.json",
        {
            "config": config.to_dict(),
            "config_hash": config.config_hash(),
            "resolved": {
                "run_dir": str(run_dir.path),
                "device": str(runtime.device),
                "precision": runtime.precision,
                "world_size": runtime.world_size,
                "batch_size": data.batch_size,
                "image_size": list(data.image_size),
                "num_classes": data.num_classes,
                "data_sizes": data.sizes(),
                **resolved,
            },
            "versions": library_versions(),
            "git_commit": git_commit(),
            "command": [sys.executable, *(sys.argv if argv is None else argv)],
        },
    )


def solve(family, config: RunConfig, data, runtime, run_dir: RunDir, argv: list[str] | None) -> dict:
    """A method without training epochs: one call computes and writes its results."""
    write_config(run_dir, config, runtime, data, argv, {})
    if runtime.is_main:
        print(f"run folder: {run_dir.path}", flush=True)
    results = family.solve(config, data, runtime, run_dir)
    run_dir.close()
    return results


def evaluate_checkpoint(trainer: Trainer, run_dir: RunDir, config: RunConfig, write: bool) -> dict:
    if config.checkpoint:
        path = Path(config.checkpoint).expanduser()
    else:
        path = run_dir.file(BEST) if run_dir.file(BEST).exists() else run_dir.file(CHECKPOINT)
    state = load_checkpoint(path)
    trainer.load_model_state(state["model"], str(path))
    result = {"checkpoint": str(path), "epoch": state["epoch"], "test_acc": trainer.evaluate(trainer.test_loader)}
    if trainer.val_loader is not None:
        result["val_acc"] = trainer.evaluate(trainer.val_loader, "val")
    if write:
        run_dir.write_json("eval.json", result)
    if trainer.runtime.is_main:
        print(f"{path}: epoch {result['epoch']}, test accuracy {result['test_acc']:.2f}%", flush=True)
    return result


def main(method: str, argv: list[str] | None = None) -> int:
    """Parse flags for ``method`` and run it; user errors print one line and return 2."""
    try:
        spec = get_method(method)
        family = FAMILIES[spec.family]
        parser = build_parser(method, spec.description, spec.defaults, family.add_arguments, trains_epochs=family.trains_epochs)
        args = parser.parse_args(argv)
        run(config_from_args(method, args), argv)
        shutdown_runtime(wait_for_peers=True)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; continue with --resume", file=sys.stderr)
        return 130
    finally:
        shutdown_runtime()
    return 0
