"""``tools/gpu_check.py``'s runs and command line."""
from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from common.errors import UserError
from runner import launch
from tools.gpu_checks.outcome import Outcome, compare, read_outcome, table
from tools.gpu_checks.plan import FAMILIES, FEATURES, NETWORK, TOLERANCE, Run, plan

ENTRY = Path(__file__).resolve().parents[1] / "gpu_check.py"  # the script; its --interrupted-run starts a run stopped after N epochs


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
    from tools.sweep.jobs import find_script

    argv = [*run.flags, *common]
    if run.interrupt_after is None:
        return [[sys.executable, str(find_script(run.method)), *argv]]
    first = [sys.executable, str(ENTRY), "--interrupted-run", str(run.interrupt_after), run.method, *argv]
    return [first, [sys.executable, str(find_script(run.method)), *argv, "--resume"]]


def execute(run: Run, common: list[str], results: Path, env: dict[str, str]) -> Outcome:
    """Run ``run``'s commands one after another (the launcher's children, :mod:`runner.launch`), output in ``<name>.log``."""
    out = results / run.name
    out.mkdir(parents=True, exist_ok=True)
    log = results / f"{run.name}.log"
    log.unlink(missing_ok=True)
    t0 = time.perf_counter()
    code = 0
    for cmd in commands(run, [*common, "--results-path", str(out)]):
        code = launch.wait(launch.start(cmd, log, env))
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
