"""What every benchmark measurement shares: the data it runs on, clocks, memory, the floor.

The *floor* is the frozen network alone on device-resident random input, doing what an epoch
needs: forward at the evaluation batch (mapping pass and test), forward + backward to the input at
the training batch (training), converted to seconds for the epoch's image counts.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULT_TAG = "BENCH_RESULT "


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
    return {
        "forward_images_per_s": forward,
        "train_images_per_s": train,
        "phase_seconds": phases,
        "epoch_seconds": sum(phases.values()),
        "epoch_cpu_seconds": (n_train + n_test) * forward_cpu + n_train * train_cpu,
    }


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
