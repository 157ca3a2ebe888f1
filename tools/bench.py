#!/usr/bin/env python
"""Throughput of one ILM-VP epoch against the frozen network's floor and a straightforward pipeline.

For each network (and precision) three measurements, each in its own process:

* **floor**: the frozen network alone on device-resident random input, doing what an epoch needs:
  forward at the evaluation batch (mapping pass and test), forward + backward to the input at the
  training batch (training). Converted to seconds for the epoch's image counts.
* **full**: one ILM-VP epoch through the real engine (``runner.cli.run``) on CIFAR-10, with every
  speed feature at its default. Measured in the same process right after the floor, so both run warm.
  The floor uses the network as the engine runs it (``models.frozen.prepare_frozen_network``,
  channels-last).
* **straightforward**: the same epoch as a researcher would first write it: fp32, NCHW, per-sample
  PIL decoding of the JPEG files through a ``torch.utils.data.DataLoader`` with torchvision
  transforms, a separate mapping pass with host-side counting, ``.item()`` every step, and the
  default allocator (this process never calls ``mallopt``).

    python tools/bench.py                                    # CPU defaults: small subset
    python tools/bench.py --device cuda --max-train-samples 10000 --max-test-samples 2000 --batch-size 256

Memory mode (``--micro-batches``): instead of the above, peak memory (resident set on CPU, max
allocated on CUDA) beside the epoch time for each ``--micro-batch`` size, optionally also with
``--recompute``, each configuration in its own process (``tools/benchmark/memory.py``):

    python tools/bench.py --batch-size 128 --micro-batches 128 32 16 --recompute --repeats 2

Prints one table and writes the numbers to ``docs/benchmarks/<device>-<date>.json``.
CIFAR-10 image folders are looked up in ``$VP_SHARED/datasets``, ``../shared/datasets`` and
``$VP_DATA``; when none is found a synthetic JPEG set of the same shape is written to a temp folder.
The measurements live in ``tools/benchmark/`` (one module per job); this file drives them.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.benchmark.engine_epoch import engine_worker  # noqa: E402
from tools.benchmark.measure import REPO, RESULT_TAG, device_name, emit, find_cifar10, write_synthetic_cifar10  # noqa: E402
from tools.benchmark.memory import measure_memory, memory_table  # noqa: E402
from tools.benchmark.report import slug, table  # noqa: E402
from tools.benchmark.straightforward import straightforward_worker  # noqa: E402

WORKERS = {"engine": engine_worker, "straightforward": straightforward_worker}


def run_worker(kind: str, spec: dict) -> dict:
    """Run one measurement in a fresh interpreter; its last tagged stdout line is the result."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--spec", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(REPO))
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"bench: the {kind} measurement of {spec['network']} failed (exit {proc.returncode})")
    return json.loads(lines[-1][len(RESULT_TAG) :])


def network_weights(name: str, tmp: Path) -> tuple[str | None, bool]:
    """The network's pretrained weights when present; otherwise a random-init file (speed is the same)."""
    from common.errors import UserError
    from models.networks import load_network, torchvision_classifiers

    try:
        load_network(name, None, download=False)
        return None, True
    except UserError:
        if name not in torchvision_classifiers():
            raise
    import torch
    import torchvision

    path = tmp / f"{name}-random.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.get_model(name, weights=None).state_dict(), path)
    return str(path), False


def default_epochs(device: str) -> int:
    """Three epochs on CUDA (the median of epochs 2 and 3 is reported), one elsewhere (a CPU epoch
    has nothing to tune, and takes minutes)."""
    import torch

    on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return 3 if on_cuda else 1


def build_cli():
    """The driver's flags (imported here only: a measurement process imports nothing it does not measure)."""
    from runner.config import add_hidden_alias, tool_parser

    p = tool_parser(__doc__.split("\n\n")[0])
    p.add_argument("--networks", nargs="+", default=["efficientnet_lite0", "resnet18"], metavar="NAME",
                   help="source networks (any --network name of the method scripts; random weights where none are cached)")  # fmt: skip
    p.add_argument("--precisions", nargs="+", default=["auto"], choices=["auto", "fp32", "bf16", "fp16"], metavar="P",
                   help="engine precisions to measure: auto, fp32, bf16, fp16")  # fmt: skip
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    samples = p.add_argument("--max-train-samples", type=int, default=1024, metavar="N", help="class-balanced CIFAR-10 training subset")
    add_hidden_alias(p, samples, "--train-samples")
    samples = p.add_argument("--max-test-samples", type=int, default=512, metavar="N", help="class-balanced CIFAR-10 test subset")
    add_hidden_alias(p, samples, "--test-samples")
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="training batch")
    p.add_argument("--eval-batch-size", type=int, default=None, metavar="N", help="evaluation batch of the floor and the engine (default: the floor twice --batch-size; the engine its default,"
                        " auto: on CUDA the largest that fits)")
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="engine epochs: one is reported alone, of more the median of all but the first (on a GPU the first"
                        " includes cuDNN's tuning of each new shape) (default: 3 on CUDA, 1 elsewhere)")  # fmt: skip
    p.add_argument("--floor-steps", type=int, default=5, metavar="N", help="timed steps per floor measurement (median)")
    p.add_argument("--floor-warmup", type=int, default=2, metavar="N", help="untimed steps before them")
    p.add_argument("--data-path", default=None, metavar="DIR", help="a root holding cifar10/{train,test}/<class>/ (default: searched)")
    p.add_argument("--synthetic", action="store_true", help="use random JPEGs of CIFAR-10's shape, even if CIFAR-10 is present")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="DataLoader workers of the straightforward pipeline")
    p.add_argument("--no-straightforward", action="store_true", help="skip the (slow) straightforward pipeline")
    p.add_argument("--no-channels-last", action="store_true", help="run the engine in NCHW")
    p.add_argument("--compile", action="store_true", help="torch.compile the network in the engine")
    p.add_argument("--no-fold-bn", action="store_true", help="keep batch norms in the engine (and the floor)")
    p.add_argument("--micro-batches", type=int, nargs="+", default=None, metavar="N",
                   help="memory mode: peak memory and epoch time of the engine at each of these --micro-batch sizes (no floor, no straightforward)")  # fmt: skip
    p.add_argument("--recompute", action="store_true", help="memory mode: also measure each --micro-batches size with --recompute")
    p.add_argument("--repeats", type=int, default=1, metavar="N", help="memory mode: runs per configuration, round-robin; the table shows medians")
    p.add_argument("-o", "--output", default=None, metavar="FILE", help="JSON file to write (default: docs/benchmarks/<device>-<date>.json)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:  # a measurement process (run_worker): nothing else is imported into it
        emit(WORKERS[argv[1]](json.loads(argv[argv.index("--spec") + 1])))
        return 0
    from common.errors import UserError

    try:
        args = build_cli().parse_args(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import torch

    if args.epochs is None:
        args.epochs = default_epochs(args.device)
    started = dt.datetime.now()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="vp-bench-") as tmp_name:
        tmp = Path(tmp_name)
        data_root = None if args.synthetic else (Path(args.data_path) if args.data_path else find_cifar10())
        if data_root is not None and not (data_root / "cifar10" / "train").is_dir():
            raise SystemExit(f"bench: no cifar10/train/<class>/ image folders under {data_root}")
        synthetic = data_root is None
        if synthetic:
            if not args.synthetic:
                print("CIFAR-10 image folders not found; writing a synthetic set of the same shape", flush=True)
            data_root = write_synthetic_cifar10(tmp / "data", args.max_train_samples, args.max_test_samples)
        rows, memory_rows = [], []
        for network in args.networks:
            weights, pretrained = network_weights(network, tmp)
            base = {
                "network": network, "weights": weights, "device": args.device, "data_root": str(data_root),
                "n_train": args.max_train_samples, "n_test": args.max_test_samples, "batch_size": args.batch_size,
                "eval_batch_size": args.eval_batch_size or 2 * args.batch_size, "epochs": args.epochs,
                "engine_eval_batch_size": args.eval_batch_size or "auto",
                "floor_steps": args.floor_steps, "floor_warmup": args.floor_warmup, "input_size": 224,
                "channels_last": not args.no_channels_last, "compile": args.compile, "fold_bn": not args.no_fold_bn, "results": str(tmp / "runs"),
                "workers": args.workers,
            }  # fmt: skip
            if args.micro_batches:
                for precision in args.precisions:
                    spec = {**base, "precision": precision, "pretrained": pretrained}
                    memory_rows += measure_memory(run_worker, spec, args.micro_batches, args.recompute, args.repeats)
                continue
            straightforward = None
            if not args.no_straightforward:
                print(f"{network}: straightforward pipeline ...", flush=True)
                straightforward = run_worker("straightforward", base)
            for precision in args.precisions:
                print(f"{network}: floor and engine epoch at precision {precision} ...", flush=True)
                result = run_worker("engine", {**base, "precision": precision})
                rows.append({"network": network, "pretrained": pretrained, **result, "straightforward": straightforward})
    text = memory_table(memory_rows) if args.micro_batches else table(rows)
    print(text)
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for package in ("torchvision", "timm", "numpy", "pillow"):
        try:
            from importlib import metadata

            versions[package] = metadata.version(package)
        except Exception:
            pass
    device = device_name(args.device)
    report = {
        "date": started.isoformat(timespec="seconds"),
        "device": device,
        "versions": versions,
        "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "spec")},
        "data": "synthetic" if synthetic else str(data_root),
        "load_average_before_after": [load_before, os.getloadavg()],
        "rows": rows,
        **({"memory_rows": memory_rows} if args.micro_batches else {}),
        "table": text,
    }
    out = Path(args.output) if args.output else REPO / "docs" / "benchmarks" / f"{slug(device)}-{started:%Y-%m-%d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
