"""Entry point shared by every method script: flags in, one run out, one-line errors."""
from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import cfg
from algorithms.engine import Trainer, check_same_data, data_identity, schedule_warnings
from algorithms.engine.checkpoint import differing_settings
from algorithms.methods import FAMILIES, Family, get_method
from algorithms.outputs import BEST, CHECKPOINT
from algorithms.settings import RunConfig, precision_change
from common import preemption, progress
from common.errors import UserError
from common.files import load_checkpoint
from common.seeding import seed_everything
from data.registry import SubsetSpec, get_dataset_info, load_dataset
from runner.config import build_parser, checked_config, config_from_args, session_flags
from runner.devices import arithmetic, setup_runtime, shutdown_runtime
from runner.provenance import git_commit, hardware, library_versions
from runner.requeue import requeue
from runner.run_dir import NoRunError, RunDir, run_folder, runs_in_other_arithmetic, runs_on_other_data, similar_runs


def data_root_for(config: RunConfig) -> Path:
    if config.dataset == "folder" and not config.data_path:
        raise UserError("--dataset folder needs --data-path DIR holding train/<class>/* and test/<class>/*")
    return config.data_root


def decode_size(config: RunConfig, family: Family) -> int | None:
    """The size images are decoded at: ``--image-size``; else, for ``--decode crop`` in a family
    with an input size (CLIP), that size, or the dataset's stored size where every stored image
    is smaller (CIFAR's 32: resized on the device instead of stored 49x larger); else the dataset's."""
    if config.image_size is not None:
        return config.image_size
    if config.decode != "crop" or family.input_size is None:
        return None
    size = family.input_size(config)
    stored = get_dataset_info(config.dataset).stored_size
    return min(size, stored) if stored else size


def run(config: RunConfig, argv: list[str] | None = None) -> dict:
    """Train (or evaluate) one configuration; returns the results dict.

    Nothing is written before the data, network and weights are loaded; the run folder is locked
    for the whole run; a run that fails before its first checkpoint leaves no folder behind (and
    with ``--overwrite`` the run it was replacing is put back): see :mod:`runner.run_dir`.
    """
    spec = get_method(config.method)
    family = FAMILIES[spec.family]
    config = checked_config(config, family)  # names and flag combinations, before anything loads
    data_root = data_root_for(config)
    runtime = setup_runtime(config.device, config.precision, family.cuda_precision, config.eval_precision)
    config = replace(config, arithmetic=arithmetic(runtime.device.type, runtime.precision))  # part of the run's identity
    if runtime.is_main and family.trains_epochs:
        for warning in schedule_warnings(config):
            print(f"warning: {warning}", file=sys.stderr, flush=True)
    seed_everything(config.seed)
    run_dir = RunDir(run_folder(config), enabled=runtime.is_main)
    if config.resume == "auto":
        config = replace(config, resume=auto_resume(config, run_dir))
    if config.eval_only and config.checkpoint:  # a file outside the run folder: read, write nothing
        return execute(family, config, data_root, runtime, run_dir, argv)
    try:
        run_dir.prepare(resume=config.resume, overwrite=config.overwrite, eval_only=config.eval_only)
    except NoRunError as exc:
        raise UserError(f"{exc}{other_data_hint(config)}") from exc
    try:
        runtime.barrier()  # every rank has checked the folder before rank 0 writes into it
        return execute(family, config, data_root, runtime, run_dir, argv)
    except BaseException as exc:
        if isinstance(exc, preemption.Stopped):  # stopped outside a training step: the last checkpoint stays
            exc.kept(run_dir.location(CHECKPOINT) if run_dir.holds_checkpoint() else None)
        note = run_dir.abandon()
        if note and isinstance(exc, UserError):
            raise UserError(f"{exc}; {note}") from exc
        if note:
            print(f"warning: {note}", file=sys.stderr)
        raise
    finally:
        run_dir.release()


def execute(family, config: RunConfig, data_root: Path, runtime, run_dir: RunDir, argv: list[str] | None) -> dict:
    if family.weights is not None:  # weights before data: a missing file in seconds, not after the decoding
        family.weights(config)
    data = load_dataset(
        config.dataset,
        data_root,
        image_size=decode_size(config, family),
        batch_size=config.batch_size,
        download=cfg.DOWNLOAD,
        decode=config.decode,
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
        return evaluate_checkpoint(trainer, run_dir, config, write=not config.checkpoint)
    if config.resume:
        trainer.resume()
    else:
        write_config(run_dir, config, runtime, data, argv, {"trainable_params": trainer.num_trainable, **experiment.info})
    if runtime.is_main:
        print(f"run folder: {run_dir.path}", flush=True)
    return trainer.fit()


def auto_resume(config: RunConfig, run_dir: RunDir) -> bool:
    """``--resume auto``: continue (True) if the run folder holds this run, start (False) if it holds
    none; a folder holding a run of other settings is refused, as a pinned ``--run-name`` can cause."""
    if not run_dir.holds_checkpoint():
        if run_dir.enabled:
            for folder, differing in similar_runs(run_dir.path, config.identity())[:3]:
                print(f"warning: --resume auto starts a new run in {run_dir.path}: {folder} holds a run of the same method, data,"
                      f" network and seed with other settings ({', '.join(differing)})", file=sys.stderr, flush=True)  # fmt: skip
        return False
    saved = run_dir.saved_identity()
    if saved is not None:  # without config.json, Trainer.resume compares the checkpoint's settings
        differing = differing_settings(saved, config.identity())
        if differing:
            raise UserError(
                f"--resume auto: run folder {run_dir.path} holds another run (settings that differ: {', '.join(differing)});"
                " pass --run-name NAME for a new folder, or --overwrite to replace that run"
            )
    return True


def other_data_hint(config: RunConfig) -> str:
    """For "nothing to resume": the folders holding these settings trained on other data."""
    others = runs_on_other_data(config.run_path(), config.to_dict(), config.data_location)
    if not others:
        computed = runs_in_other_arithmetic(config.run_path(), config.to_dict())
        if not computed:
            return ""
        folder, other = computed[0]
        return (
            f"; {folder} holds a run of these settings computed in {other}: continue it on that device and precision,"
            f" or here with --run-name {folder.name} --allow-precision-change"
        )
    folder, location = others[0]
    return f"; {folder} holds a run of these settings on the data in {location}, this command reads {config.data_location}"


def write_config(run_dir: RunDir, config: RunConfig, runtime, data, argv: list[str] | None, resolved: dict) -> None:
    """``config.json``: every setting, what they resolved to, library versions, commit and command."""
    run_dir.write_json(
        "config.json",
        {
            "config": config.to_dict(),
            "config_hash": config.config_hash(),
            "data": data_identity(data),
            "resolved": {
                "run_dir": str(run_dir.path),
                "device": str(runtime.device),
                "precision": runtime.precision,
                "eval_precision": runtime.eval_precision or runtime.precision,
                "world_size": runtime.world_size,
                "batch_size": data.batch_size,
                "image_size": list(data.image_size),
                "num_classes": data.num_classes,
                "data_sizes": data.sizes(),
                **config.seeding_settings(),  # new runs say so: tools/make_table.py keeps older ones apart
                **resolved,
            },
            "versions": library_versions(),
            "hardware": hardware(runtime.device),
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
    note = precision_change(state.get("config", {}), config.identity(), config.allow_precision_change, path)
    if note and trainer.runtime.is_main:
        print(note, flush=True)
    if write:  # the run's own checkpoint; --checkpoint FILE may be evaluated on any data
        check_same_data(state.get("data"), trainer.data, path)
    trainer.load_model_state(state["model"], str(path))
    result = {"checkpoint": str(path), "epoch": state["epoch"]}
    splits = [("test", trainer.test_loader)] + ([("val", trainer.val_loader)] if trainer.val_loader is not None else [])
    for split, loader in splits:  # test_acc, test_top5, test_loss (and val_...)
        result.update({f"{split}_{metric}": value for metric, value in trainer.evaluate(loader, split).items()})
    if write:
        run_dir.write_json("eval.json", result)
    if trainer.runtime.is_main:
        print(f"{path}: epoch {result['epoch']}, test accuracy {result['test_acc']:.2f}%", flush=True)
    return result


def result_line(results: dict) -> str:
    """The run's last line (kept by ``--quiet``): its test accuracy and where the results are."""
    final = results.get("final_test_acc", results.get("test_acc"))
    best = results.get("best_test_acc")
    text = "done" if final is None else f"done: test accuracy {final:.2f}%"
    if best is not None and results.get("best_epoch") is not None:
        text += f" (best {best:.2f}% at epoch {results['best_epoch']})"
    return text


def main(method: str, argv: list[str] | None = None, install_signal_handlers: bool | None = None) -> int:
    """Parse flags for ``method`` and run it; user errors print one line and return 2; a run stopped
    by a signal (:mod:`common.preemption`) returns :data:`~common.preemption.EXIT_STOPPED`.

    The handlers of ``--stop-signals`` are installed for the run and the previous ones restored
    after it. A method script (``argv`` None: the command line) installs them; a library call with
    ``argv`` (a notebook, a test) leaves the process's signals alone unless
    ``install_signal_handlers=True``, so that a SIGTERM meant for the caller still stops the caller.
    """
    install = argv is None if install_signal_handlers is None else install_signal_handlers
    try:
        args = build_parser(method).parse_args(argv)
        session = session_flags(args)
        signals = preemption.parse_signals(session["stop_signals"])
        signals = signals if install else []
        with progress.console(session["progress_interval"], session["quiet"], session["log_file"]):
            return run_session(method, args, argv, signals, session["requeue"])
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run_session(method: str, args, argv: list[str] | None, signals: list, requeue_job: bool) -> int:
    """One run inside the console set up by :func:`main`."""
    try:
        with preemption.handling(signals):
            results = run(config_from_args(method, args), argv)
        shutdown_runtime(wait_for_peers=True)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except preemption.Stopped as exc:
        print(f"{exc}; continue with --resume auto", file=sys.stderr, flush=True)
        if requeue_job:
            done, note = requeue()
            print(note if done else f"warning: {note}", file=sys.stderr, flush=True)
        return preemption.EXIT_STOPPED
    except KeyboardInterrupt:
        print("interrupted; continue with --resume", file=sys.stderr)
        return 130
    finally:
        shutdown_runtime()
    if os.environ.get("RANK", "0") == "0":  # one result line under torchrun
        progress.result(result_line(results))
    return 0
