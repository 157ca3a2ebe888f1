#!/usr/bin/env python
"""A GPU check anyone can run: every method family on CUDA against an fp32 run, plus the GPU-only paths.

What no CPU test can show: each method family trains for ``--epochs`` (2) on a small CIFAR-10
subset on CUDA at its default precision (fp16 with loss scaling for the prompt methods, bf16
elsewhere) and again with ``--precision fp32``; each pair must have finite training losses, test
accuracies within ``--tolerance`` points, and the same label mapping after the first epoch's
mapping pass (that pass runs in fp32 in both). Then ``--compile``, ``--compile max``,
``--micro-batch auto``, batches streamed from pinned host memory on the side copy stream
(``--resident-data false``), today's evaluation batch (``--eval-batch-size 256``) and ``--resume``
after an interruption are each checked against the plain run of the same precision. The runs go
``--runs-at-once`` at a time on the one GPU (:mod:`runner.gpu_share`), each its own process.

    python tools/gpu_check.py                     # about 2-4 minutes on one H100/H200
    python tools/gpu_check.py --only ilm_vp resume --runs-at-once 1

Prints one table, writes ``gpu_check.json`` in ``--results-path``, exits 1 if a check fails and
2 (with one ``error:`` line) on a machine without CUDA. The networks have random weights (nothing
downloads): the check compares paths of computation, not the accuracy of a method. CIFAR-10 image
folders are looked up as ``tools/bench.py`` does; without them a synthetic set of the same shape
is written.
"""
from __future__ import annotations

import json
import math
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.errors import UserError  # noqa: E402

TOLERANCE = 5.0  # points of test accuracy (50 of the 1,000 test images) between two paths of one run
NETWORK = "resnet18"  # random init (tools/bench.py's network_weights)


@dataclass(frozen=True)
class Run:
    """One process: a method script with flags (beyond the common ones)."""

    name: str
    method: str
    flags: tuple[str, ...] = ()
    interrupt_after: int | None = None  # stop after this many epochs, then --resume to the end


@dataclass(frozen=True)
class Check:
    """A row of the table: ``subject`` against ``reference`` (run names)."""

    label: str
    subject: str
    reference: str


CNN = ("--network", NETWORK)
CLIP = ("--clip-pretrained", "none")
FAMILIES = {  # a method of each family (and the prompt and mapping variants with their own GPU paths)
    "ilm_vp": ("ilm_vp", CNN),
    "blmplus_vp": ("blmplus_vp", CNN),
    "smm_vp": ("smm_vp", CNN),
    "watermark": ("ilm_vp", (*CNN, "--prompt", "watermark")),
    "linear_probing": ("linear_probing", CNN),
    "full_finetune": ("full_finetune", CNN),
    "ilm_tp_vp": ("ilm_tp_vp", CLIP),
    "clip_linear_probe": ("clip_linear_probe", CLIP),
    "attrvr": ("attrvr", (*CLIP, "--attributes", "{attributes}")),  # attribute files written for the check's classes
    "dvp": ("dvp", (*CLIP, "--grouping", "cluster", "--descriptions", "{attributes}")),  # clusters of the descriptive file
}
FEATURES = {  # checked on ILM-VP against its plain run at the default precision
    "compile": ("--compile",),
    "compile_max": ("--compile", "max"),
    "micro_batch_auto": ("--micro-batch", "auto"),
    "streamed": ("--resident-data", "false"),
    "eval_batch_256": ("--eval-batch-size", "256"),
}


# checks left out unless named with --only: max-autotune compiles each batch shape for minutes
OPT_IN = {"compile_max"}


def plan(only: list[str] | None = None) -> tuple[list[Run], list[Check]]:
    """The runs and the checks; ``only`` keeps the checks of these names (families, features, resume;
    default: all but :data:`OPT_IN`)."""
    runs, checks = [], []
    for name, (method, flags) in FAMILIES.items():
        runs += [Run(name, method, flags), Run(f"{name}-fp32", method, (*flags, "--precision", "fp32"))]
        checks.append(Check(name, name, f"{name}-fp32"))
    for name, flags in FEATURES.items():
        runs.append(Run(name, "ilm_vp", (*CNN, *flags)))
        checks.append(Check(name, name, "ilm_vp"))
    runs.append(Run("resume", "ilm_vp", CNN, interrupt_after=1))
    checks.append(Check("resume", "resume", "ilm_vp"))
    if not only:
        only = [c.label for c in checks if c.label not in OPT_IN]
    if only:
        unknown = sorted(set(only) - {c.label for c in checks})
        if unknown:
            raise UserError(f"unknown check {', '.join(unknown)}; choose from {', '.join(c.label for c in checks)}")
        checks = [c for c in checks if c.label in only]
        needed = {c.subject for c in checks} | {c.reference for c in checks}
        runs = [r for r in runs if r.name in needed]
    return runs, checks


# ---------------------------------------------------------------------------------------------
# Reading a finished run, and comparing two


@dataclass
class Outcome:
    """What a check needs of one finished run (read from its folder)."""

    exit_code: int
    test_acc: float | None = None
    losses: list[float] = field(default_factory=list)
    first_mapping: dict | None = None
    precision: str | None = None
    seconds: float = 0.0
    note: str = ""


def read_outcome(results: Path, exit_code: int, seconds: float) -> Outcome:
    """The run below ``results`` (one run folder)."""
    found = sorted(results.rglob("results.json"))
    if exit_code != 0 or not found:
        return Outcome(exit_code or 1, seconds=seconds, note="no results.json" if exit_code == 0 else f"exit {exit_code}")
    folder = found[0].parent
    summary = json.loads(found[0].read_text())
    metrics = folder / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.is_file() else []
    mapping = folder / "mappings" / "epoch_001.json"
    config = json.loads((folder / "config.json").read_text())
    acc = summary.get("final_test_acc", summary.get("test_acc"))
    return Outcome(
        0, acc, [r["train_loss"] for r in rows], json.loads(mapping.read_text()) if mapping.is_file() else None,
        config.get("resolved", {}).get("precision"), seconds,
    )  # fmt: skip


def compare(check: Check, subject: Outcome, reference: Outcome, tolerance: float = TOLERANCE) -> dict:
    """One table row: the subject's accuracy against the reference's, finite losses, the first mapping."""
    row = {"check": check.label, "against": check.reference, "precision": subject.precision or "-", "seconds": subject.seconds}
    failed = [f"{name} {o.note}" for name, o in (("run", subject), ("reference", reference)) if o.exit_code != 0]
    if failed:
        return {**row, "acc": None, "ref_acc": None, "delta": None, "finite": "-", "mapping": "-", "verdict": "FAIL: " + "; ".join(failed)}
    delta = None if subject.test_acc is None or reference.test_acc is None else subject.test_acc - reference.test_acc
    finite = all(math.isfinite(v) for v in subject.losses + reference.losses)
    if subject.first_mapping is None or reference.first_mapping is None:
        mapping = "-"
    else:
        mapping = "same" if subject.first_mapping == reference.first_mapping else "differs"
    problems = []
    if not finite:
        problems.append("a non-finite training loss")
    if delta is None or abs(delta) > tolerance:
        problems.append(f"accuracy off by more than {tolerance:g} points")
    if mapping == "differs":
        problems.append("another first-epoch mapping")
    verdict = "ok" if not problems else "FAIL: " + ", ".join(problems)
    return {**row, "acc": subject.test_acc, "ref_acc": reference.test_acc, "delta": delta, "finite": "yes" if finite else "NO", "mapping": mapping, "verdict": verdict}


def table(rows: list[dict], tolerance: float = TOLERANCE) -> str:
    """The check's one table (markdown)."""

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    lines = [
        f"| check | against | precision | test acc % | against % | difference (tolerance {tolerance:g}) | losses finite | mapping after epoch 1 | s | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        delta = "-" if r["delta"] is None else f"{r['delta']:+.2f}"
        lines.append(
            f"| {r['check']} | {r['against']} | {r['precision']} | {pct(r['acc'])} | {pct(r['ref_acc'])} | {delta} | {r['finite']}"
            f" | {r['mapping']} | {r['seconds']:.0f} | {r['verdict']} |"
        )
    failed = sum(not r["verdict"].startswith("ok") for r in rows)
    lines.append("")
    lines.append(f"{len(rows) - failed} of {len(rows)} checks ok" + (f", {failed} FAILED" if failed else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Running


def interrupted_main(argv: list[str]) -> int:
    """``--interrupted-run N METHOD FLAGS...``: the method's main, stopped as by Ctrl-C after N epochs."""
    from algorithms.engine import Trainer
    from runner.cli import main

    after, method, flags = int(argv[0]), argv[1], argv[2:]
    original = Trainer.train_epoch

    def train_epoch(self, epoch):
        if epoch == after:
            raise KeyboardInterrupt
        return original(self, epoch)

    Trainer.train_epoch = train_epoch
    code = main(method, flags)
    return 0 if code == 130 else code or 1  # interrupted as planned


def commands(run: Run, common: list[str]) -> list[list[str]]:
    from tools.reproduce import find_script

    argv = [*run.flags, *common]
    if run.interrupt_after is None:
        return [[sys.executable, str(find_script(run.method)), *argv]]
    first = [sys.executable, str(Path(__file__).resolve()), "--interrupted-run", str(run.interrupt_after), run.method, *argv]
    return [first, [sys.executable, str(find_script(run.method)), *argv, "--resume"]]


def execute(run: Run, common: list[str], results: Path, env: dict[str, str]) -> Outcome:
    out = results / run.name
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    code = 0
    with open(results / f"{run.name}.log", "w") as log:
        for cmd in commands(run, [*common, "--results-path", str(out)]):
            log.write(f"$ {shlex.join(cmd)}\n")
            log.flush()
            code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
            if code != 0:
                break
    return read_outcome(out, code, time.perf_counter() - t0)


def trains_epochs(method: str) -> bool:
    from algorithms.methods import FAMILIES as METHOD_FAMILIES
    from algorithms.methods import get_method

    return METHOD_FAMILIES[get_method(method).family].trains_epochs


def random_weights(folder: Path) -> str:
    import torch
    import torchvision

    path = folder / f"{NETWORK}-random.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.get_model(NETWORK, weights=None).state_dict(), path)
    return str(path)


def build_cli():
    from runner.config import tool_parser

    p = tool_parser(__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", metavar="CHECK", help="run only these checks (default: all but compile_max): " + ", ".join([*FAMILIES, *FEATURES, "resume"]))
    p.add_argument("--epochs", type=int, default=2, metavar="N", help="epochs of every run")
    p.add_argument("--max-train-samples", type=int, default=2000, metavar="N", help="class-balanced CIFAR-10 training subset")
    p.add_argument("--max-test-samples", type=int, default=1000, metavar="N", help="class-balanced CIFAR-10 test subset")
    p.add_argument("--tolerance", type=float, default=TOLERANCE, metavar="POINTS", help="largest difference of test accuracy between two paths")
    p.add_argument("--runs-at-once", type=int, default=4, metavar="N", help="runs sharing the GPU at once")
    p.add_argument("--data-path", default=None, metavar="DIR", help="a root holding cifar10/{train,test}/<class>/ (default: searched, else synthetic)")
    p.add_argument("--results-path", default=None, metavar="DIR", help="where the runs, logs and gpu_check.json go (default: a temporary folder)")
    return p


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def write_attributes(folder: Path, data: Path) -> str:
    """AttrVR's two attribute files for the check's CIFAR-10 classes (made-up sentences: the check
    is of the CUDA path, not of the attributes)."""
    folder.mkdir(parents=True, exist_ok=True)
    # the folder names and CIFAR-10's own names, whichever the loader reports
    classes = sorted({p.name for p in (data / "cifar10" / "train").glob("*") if p.is_dir()} | set(CIFAR10_CLASSES))
    for kind in ("des", "dist"):
        text = {c: [f"A {kind} sentence number {i} about the look of a {c}." for i in range(25)] for c in classes}
        (folder / f"cifar10_{kind}.json").write_text(json.dumps(text))
    return str(folder)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--interrupted-run"]:
        return interrupted_main(argv[1:])
    try:
        args = build_cli().parse_args(argv)
        runs, checks = plan(args.only)
        import torch

        if not torch.cuda.is_available():
            raise UserError("tools/gpu_check.py checks the CUDA paths and needs a CUDA GPU; this machine has none (torch.cuda.is_available() is False)")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from runner.gpu_share import run_environment, run_in_slots, slots
    from tools.benchmark.measure import find_cifar10, write_synthetic_cifar10

    with tempfile.TemporaryDirectory(prefix="vp-gpu-check-") as tmp:
        results = Path(args.results_path).expanduser().resolve() if args.results_path else Path(tmp)
        results.mkdir(parents=True, exist_ok=True)
        data = Path(args.data_path) if args.data_path else find_cifar10()
        if data is None:
            print("CIFAR-10 image folders not found; writing a synthetic set of the same shape", flush=True)
            data = write_synthetic_cifar10(Path(tmp) / "data", args.max_train_samples, args.max_test_samples)
        common = [
            "--dataset", "cifar10", "--data-path", str(data), "--max-train-samples", str(args.max_train_samples),
            "--max-test-samples", str(args.max_test_samples), "--epochs", str(args.epochs), "--seed", "7", "--device", "cuda",
        ]  # fmt: skip
        weights = random_weights(Path(tmp))
        attributes = write_attributes(Path(tmp) / "attributes", data)
        outcomes: dict[str, Outcome] = {}

        def one(run: Run, gpu: str | None) -> int:
            run = replace(run, flags=tuple(f.format(attributes=attributes) for f in run.flags))
            flags = [*common, "--weights", weights] if NETWORK in run.flags else common
            if not trains_epochs(run.method):  # the CLIP linear probe solves in one call: no --epochs
                i = flags.index("--epochs")
                flags = flags[:i] + flags[i + 2 :]
            outcomes[run.name] = execute(run, flags, results, run_environment(gpu, args.runs_at_once))
            print(f"{run.name}: {'ok' if outcomes[run.name].exit_code == 0 else outcomes[run.name].note} ({outcomes[run.name].seconds:.0f} s)", flush=True)
            return outcomes[run.name].exit_code

        gpu = str(torch.cuda.current_device())
        t0 = time.perf_counter()
        run_in_slots(runs, slots([gpu], args.runs_at_once), one)
        wall = time.perf_counter() - t0
        rows = [compare(c, outcomes[c.subject], outcomes[c.reference], args.tolerance) for c in checks]
        text = table(rows, args.tolerance)
        print(text)
        logs = results if args.results_path else "a temporary folder, removed (keep them with --results-path)"
        print(f"{len(runs)} runs in {wall:.0f} s on {torch.cuda.get_device_name()} ({args.runs_at_once} at once); logs in {logs}")
        report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "wall_seconds": wall, "settings": vars(args), "rows": rows, "table": text}
        (results / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(r["verdict"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
