#!/usr/bin/env python
"""Throughput of one ILM-VP epoch against the frozen network's floor and a straightforward pipeline.

For each network (and precision) three measurements, each in its own process:

* **floor**: the frozen network alone on device-resident random input, doing what an epoch needs:
  forward at the evaluation batch (mapping pass and test), forward + backward to the input at the
  training batch (training). Converted to seconds for the epoch's image counts.
* **full**: one ILM-VP epoch through the real engine (``algorithms.cli.run``) on CIFAR-10, with every
  speed feature at its default. Measured in the same process right after the floor, so both run warm.
  The floor uses the network as the engine runs it (``models.frozen.prepare_frozen_network``,
  channels-last).
* **straightforward**: the same epoch as a researcher would first write it: fp32, NCHW, per-sample
  PIL decoding of the JPEG files through a ``torch.utils.data.DataLoader`` with torchvision
  transforms, a separate mapping pass with host-side counting, ``.item()`` every step, and the
  default allocator (this process never calls ``mallopt``).

    python tools/bench.py                                    # CPU defaults: small subset
    python tools/bench.py --device cuda --train-samples 10000 --test-samples 2000 --batch-size 256

Prints one table and writes the numbers to ``docs/benchmarks/<device>-<date>.json``.
CIFAR-10 image folders are looked up in ``$VP_SHARED/datasets``, ``../shared/datasets`` and
``$VP_DATA``; when none is found a synthetic JPEG set of the same shape is written to a temp folder.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULT_TAG = "BENCH_RESULT "


# ---------------------------------------------------------------------------------------------
# Shared helpers


def find_cifar10() -> Path | None:
    """A data root holding ``cifar10/{train,test}/<class>/*.jpg``, or None."""
    candidates = []
    if os.environ.get("VP_SHARED"):
        candidates.append(Path(os.environ["VP_SHARED"]) / "datasets")
    candidates += [REPO.parent / "shared" / "datasets", REPO.parent.parent / "shared" / "datasets"]
    if os.environ.get("VP_DATA"):
        candidates.append(Path(os.environ["VP_DATA"]))
    for root in candidates:
        if (root / "cifar10" / "train").is_dir() and (root / "cifar10" / "test").is_dir():
            return root
    return None


def write_synthetic_cifar10(root: Path, train: int, test: int, seed: int = 0) -> Path:
    """Random 32x32 JPEGs in ``root/cifar10/{train,test}/<class>/``, 10 classes, as a stand-in."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("test", test)):
        for c in range(10):
            folder = root / "cifar10" / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(-(-count // 10)):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:05d}.jpg")
    return root


def peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (DataLoader workers): robust to a shared machine."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def emit(result: dict) -> None:
    print(RESULT_TAG + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------
# Worker: floor + full engine epoch (one process, allocator tuned by the engine's runtime)


def measure_floor(spec: dict, runtime) -> dict:
    """Images/s of the frozen network: forward at the eval batch, forward+backward-to-input at the train batch."""
    import torch

    from models.networks import load_network

    net = load_network(spec["network"], spec["weights"]).model  # frozen, in eval mode
    if spec.get("engine_rewrites", True):  # the network exactly as the engine runs it
        from models.frozen import prepare_frozen_network

        net, _ = prepare_frozen_network(net, spec["fold_bn"])
    net = net.to(runtime.device)
    fmt = torch.channels_last if spec["channels_last"] else torch.contiguous_format
    net.to(memory_format=fmt)
    size = spec["input_size"]

    def rate(batch: int, train: bool) -> float:
        x = torch.rand(batch, 3, size, size, device=runtime.device).contiguous(memory_format=fmt)
        times, cpu = [], []
        for i in range(spec["floor_warmup"] + spec["floor_steps"]):
            sync(runtime.device)
            t0, c0 = time.perf_counter(), cpu_seconds()
            if train:
                xi = x.detach().requires_grad_(True)
                with runtime.autocast():
                    out = net(xi)
                out.float().sum().backward()
            else:
                with torch.no_grad(), runtime.autocast():
                    net(x)
            sync(runtime.device)
            if i >= spec["floor_warmup"]:
                times.append(time.perf_counter() - t0)
                cpu.append(cpu_seconds() - c0)
        times.sort()
        cpu.sort()
        return batch / times[len(times) // 2], cpu[len(cpu) // 2] / batch  # median step

    forward, forward_cpu = rate(spec["eval_batch_size"], train=False)
    train, train_cpu = rate(spec["batch_size"], train=True)
    n_train, n_test = spec["n_train"], spec["n_test"]
    phases = {"mapping": n_train / forward, "train": n_train / train, "test": n_test / forward}
    del net
    return {
        "forward_images_per_s": forward,
        "train_images_per_s": train,
        "phase_seconds": phases,
        "epoch_seconds": sum(phases.values()),
        "epoch_cpu_seconds": (n_train + n_test) * forward_cpu + n_train * train_cpu,
    }


def _cpu_timed(fn, totals: dict, phase: str):
    def wrapper(*args, **kwargs):
        c0 = cpu_seconds()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[phase] += cpu_seconds() - c0

    return wrapper


def engine_worker(spec: dict) -> dict:
    import torch

    from algorithms.cli import run
    from algorithms.config import build_parser, config_from_args
    from algorithms.methods import get_method
    from algorithms.runtime import setup_runtime

    runtime = setup_runtime(spec["device"], spec["precision"])
    floor = measure_floor(spec, runtime)
    argv = [
        "--network", spec["network"], "--dataset", "cifar10", "--data-path", spec["data_root"],
        "--max-train-samples", str(spec["n_train"]), "--max-test-samples", str(spec["n_test"]),
        "--epochs", str(spec["epochs"]), "--batch-size", str(spec["batch_size"]),
        "--eval-batch-size", str(spec["eval_batch_size"]), "--device", spec["device"],
        "--precision", spec["precision"], "--results-path", spec["results"], "--overwrite",
        "--log-interval", "1000000", "--seed", "7",
    ]  # fmt: skip
    if spec["weights"]:
        argv += ["--weights", spec["weights"]]
    if not spec["channels_last"]:
        argv.append("--no-channels-last")
    if spec["compile"]:
        argv.append("--compile")
    if not spec["fold_bn"]:
        argv.append("--no-fold-bn")
    config = config_from_args("ilm_vp", build_parser("ilm_vp", "", get_method("ilm_vp").defaults, None).parse_args(argv))
    from algorithms.engine import Trainer

    phase_cpu = {"mapping": 0.0, "train": 0.0, "test": 0.0}
    for method, phase in (("refresh_mapping", "mapping"), ("train_epoch", "train"), ("evaluate", "test")):
        setattr(Trainer, method, _cpu_timed(getattr(Trainer, method), phase_cpu, phase))
    if runtime.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(runtime.device)
    t0 = time.perf_counter()
    run(config, argv)
    total = time.perf_counter() - t0
    rows = [json.loads(line) for line in (config.run_path() / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]  # the last epoch: steady state when --epochs > 1
    phases = {"mapping": last["mapping_seconds"], "train": last["train_seconds"], "test": last["eval_seconds"]}
    return {
        "precision": runtime.precision,
        "device": str(runtime.device),
        "floor": floor,
        "full": {
            "phase_seconds": phases,
            "epoch_seconds": last["epoch_seconds"],
            "images_per_s": spec["n_train"] / last["epoch_seconds"],
            "train_images_per_s": last["train_images_per_s"],
            "test_acc": last["test_acc"],
            "epoch_cpu_seconds": sum(phase_cpu.values()) / spec["epochs"],  # mean over epochs
            "phase_cpu_seconds": {k: v / spec["epochs"] for k, v in phase_cpu.items()},
            "run_seconds_including_data_loading": total,
            "peak_memory_mb": peak_memory_mb(runtime.device),
        },
    }


# ---------------------------------------------------------------------------------------------
# Worker: the straightforward pipeline (its own process: default allocator, fp32, NCHW)


def straightforward_worker(spec: dict) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F
    import torchvision
    from torch import nn
    from torchvision import transforms

    from algorithms.runtime import Runtime
    from data.tensors import stratified_subset
    from models.networks import load_network

    device = torch.device(spec["device"] if spec["device"] != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(7)
    net_info = load_network(spec["network"], spec["weights"])
    network = net_info.model.to(device).eval()
    size = spec["input_size"]

    class PadPrompt(nn.Module):
        def __init__(self, image: int = 32) -> None:
            super().__init__()
            self.l_pad = (size - image + 1) // 2
            self.r_pad = size - image - self.l_pad
            mask = torch.ones(3, size, size)
            mask[:, self.l_pad : self.l_pad + image, self.l_pad : self.l_pad + image] = 0
            self.register_buffer("mask", mask)
            self.program = nn.Parameter(torch.zeros(3, size, size))
            self.register_buffer("mean", torch.tensor(net_info.mean).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(net_info.std).view(1, 3, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.pad(x, (self.l_pad, self.r_pad, self.l_pad, self.r_pad), value=0) + torch.sigmoid(self.program) * self.mask
            return (x - self.mean) / self.std

    prompt = PadPrompt().to(device)
    root = Path(spec["data_root"]) / "cifar10"
    tf = transforms.Compose([transforms.ToTensor()])
    train_set = torchvision.datasets.ImageFolder(str(root / "train"), transform=tf)
    test_set = torchvision.datasets.ImageFolder(str(root / "test"), transform=tf)
    train_idx = stratified_subset(torch.tensor(train_set.targets), count=spec["n_train"], seed=0).tolist()
    test_idx = stratified_subset(torch.tensor(test_set.targets), count=spec["n_test"], seed=0).tolist()
    train_set, test_set = torch.utils.data.Subset(train_set, train_idx), torch.utils.data.Subset(test_set, test_idx)
    loader_args = dict(num_workers=spec["workers"], pin_memory=device.type == "cuda")
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=spec["batch_size"], shuffle=True, **loader_args)
    map_loader = torch.utils.data.DataLoader(train_set, batch_size=spec["batch_size"], shuffle=False, **loader_args)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=spec["batch_size"], shuffle=False, **loader_args)
    optimizer = torch.optim.Adam(prompt.parameters(), lr=0.01)

    # one untimed step so that library initialisation is not charged to the epoch
    x = torch.rand(2, 3, 32, 32, device=device)
    network(prompt(x)).sum().backward()
    optimizer.zero_grad()

    def timed(fn):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        return out, time.perf_counter() - t0

    def mapping_pass() -> list[int]:
        preds, targets = [], []
        with torch.no_grad():
            for x, y in map_loader:
                preds.append(network(prompt(x.to(device))).argmax(1).cpu())
                targets.append(y)
        counts = np.zeros((1000, 10))
        for p, t in zip(torch.cat(preds).tolist(), torch.cat(targets).tolist()):
            counts[p, t] += 1
        mapping = [0] * 10
        for _ in range(10):
            s, t = np.unravel_index(np.argmax(counts), counts.shape)
            mapping[t] = int(s)
            counts[s, :] = -1
            counts[:, t] = -1
        return mapping

    def train_epoch(mapping: list[int]) -> float:
        prompt.train()
        total_loss, correct, seen = 0.0, 0, 0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            logits = network(prompt(x))[:, mapping]
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * y.size(0)
            correct += (logits.argmax(1) == y).sum().item()
            seen += y.size(0)
        return total_loss / seen

    def test(mapping: list[int]) -> float:
        correct, seen = 0, 0
        with torch.no_grad():
            for x, y in test_loader:
                x, y = x.to(device), y.to(device)
                correct += (network(prompt(x))[:, mapping].argmax(1) == y).sum().item()
                seen += y.size(0)
        return 100.0 * correct / seen

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    c0 = cpu_seconds()
    mapping, t_map = timed(mapping_pass)
    _, t_train = timed(lambda: train_epoch(mapping))
    acc, t_test = timed(lambda: test(mapping))
    epoch = t_map + t_train + t_test
    epoch_cpu = cpu_seconds() - c0
    # The same network alone, laid out as this pipeline runs it (NCHW, batch norms kept, fp32):
    # its ratio to the engine's floor bounds what any exact pipeline can gain over this one.
    # (a Runtime built directly, not by setup_runtime, leaves the allocator as this pipeline has it)
    network_alone = measure_floor({**spec, "engine_rewrites": False, "channels_last": False}, Runtime(device, "fp32"))
    return {
        "epoch_cpu_seconds": epoch_cpu,
        "network_alone": network_alone,
        "phase_seconds": {"mapping": t_map, "train": t_train, "test": t_test},
        "epoch_seconds": epoch,
        "images_per_s": spec["n_train"] / epoch,
        "test_acc": acc,
        "peak_memory_mb": peak_memory_mb(device),
    }


# ---------------------------------------------------------------------------------------------
# Driver


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
    from algorithms.errors import UserError
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


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return torch.cuda.get_device_name(0)
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} cores)"


def fmt_phases(p: dict) -> str:
    return f"{p['mapping']:.1f}/{p['train']:.1f}/{p['test']:.1f}"


def table(rows: list[dict]) -> str:
    head = (
        "| network | precision | floor fwd / train img/s | floor epoch s | full epoch s (map/train/test) | full img/s"
        " | full peak MB | straightforward epoch s (map/train/test) | straightforward peak MB | full/floor | straightforward/full"
        " | CPU-s floor / full / straightforward | CPU full/floor | CPU straightforward/full"
        " | straightforward network alone s | bound: network alone/floor |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        fl, fu, sf = r["floor"], r["full"], r.get("straightforward")
        sf_cells = f"{sf['epoch_seconds']:.1f} ({fmt_phases(sf['phase_seconds'])}) | {sf['peak_memory_mb']:.0f}" if sf else "- | -"
        ratio_sf = f"{sf['epoch_seconds'] / fu['epoch_seconds']:.2f}x" if sf else "-"
        sf_cpu = f"{sf['epoch_cpu_seconds']:.0f}" if sf else "-"
        cpu_ratio_sf = f"{sf['epoch_cpu_seconds'] / fu['epoch_cpu_seconds']:.2f}x" if sf else "-"
        cpu_cells = (
            f" {fl['epoch_cpu_seconds']:.0f} / {fu['epoch_cpu_seconds']:.0f} / {sf_cpu}"
            f" | {fu['epoch_cpu_seconds'] / fl['epoch_cpu_seconds']:.2f}x | {cpu_ratio_sf} |"
        )
        alone = sf.get("network_alone") if sf else None
        cpu_cells += (
            f" {alone['epoch_seconds']:.1f} | {alone['epoch_seconds'] / fl['epoch_seconds']:.2f}x |" if alone else " - | - |"
        )
        lines.append(
            f"| {r['network']}{'' if r['pretrained'] else ' (random init)'} | {r['precision']}"
            f" | {fl['forward_images_per_s']:.1f} / {fl['train_images_per_s']:.1f} | {fl['epoch_seconds']:.1f}"
            f" | {fu['epoch_seconds']:.1f} ({fmt_phases(fu['phase_seconds'])}) | {fu['images_per_s']:.1f}"
            f" | {fu['peak_memory_mb']:.0f} | {sf_cells} | {fu['epoch_seconds'] / fl['epoch_seconds']:.2f}x | {ratio_sf} |" + cpu_cells
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--networks", nargs="+", default=["efficientnet_lite0", "resnet18"])
    p.add_argument("--precisions", nargs="+", default=["auto"], help="engine precisions to measure (auto, fp32, bf16, fp16)")
    p.add_argument("--device", default="auto")
    p.add_argument("--train-samples", type=int, default=1024, help="class-balanced CIFAR-10 training subset")
    p.add_argument("--test-samples", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--eval-batch-size", type=int, default=None, help="default: twice the batch size (the engine's default)")
    p.add_argument("--epochs", type=int, default=1, help="engine epochs; the last one is reported")
    p.add_argument("--floor-steps", type=int, default=5, help="timed steps per floor measurement (median)")
    p.add_argument("--floor-warmup", type=int, default=2)
    p.add_argument("--data-path", default=None, help="a root holding cifar10/{train,test}/<class>/ (default: searched)")
    p.add_argument("--synthetic", action="store_true", help="use random JPEGs of CIFAR-10's shape, even if CIFAR-10 is present")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the straightforward pipeline")
    p.add_argument("--no-straightforward", action="store_true", help="skip the (slow) straightforward pipeline")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the network in the engine")
    p.add_argument("--no-fold-bn", action="store_true", help="keep batch norms in the engine (and the floor)")
    p.add_argument("--output", default=None, help="JSON path (default docs/benchmarks/<device>-<date>.json)")
    p.add_argument("--worker", choices=["engine", "straightforward"], help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        spec = json.loads(args.spec)
        emit(engine_worker(spec) if args.worker == "engine" else straightforward_worker(spec))
        return 0

    import torch

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
            data_root = write_synthetic_cifar10(tmp / "data", args.train_samples, args.test_samples)
        rows = []
        for network in args.networks:
            weights, pretrained = network_weights(network, tmp)
            base = {
                "network": network, "weights": weights, "device": args.device, "data_root": str(data_root),
                "n_train": args.train_samples, "n_test": args.test_samples, "batch_size": args.batch_size,
                "eval_batch_size": args.eval_batch_size or 2 * args.batch_size, "epochs": args.epochs,
                "floor_steps": args.floor_steps, "floor_warmup": args.floor_warmup, "input_size": 224,
                "channels_last": not args.no_channels_last, "compile": args.compile, "fold_bn": not args.no_fold_bn, "results": str(tmp / "runs"),
                "workers": args.workers,
            }  # fmt: skip
            straightforward = None
            if not args.no_straightforward:
                print(f"{network}: straightforward pipeline ...", flush=True)
                straightforward = run_worker("straightforward", base)
            for precision in args.precisions:
                print(f"{network}: floor and engine epoch at precision {precision} ...", flush=True)
                result = run_worker("engine", {**base, "precision": precision})
                rows.append({"network": network, "pretrained": pretrained, **result, "straightforward": straightforward})
    text = table(rows)
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
        "table": text,
    }
    out = Path(args.output) if args.output else REPO / "docs" / "benchmarks" / f"{slug(device)}-{started:%Y-%m-%d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {out}")
    return 0


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-").replace("--", "-")[:60]


if __name__ == "__main__":
    sys.exit(main())
