"""Peak memory of loading a dataset and streaming one epoch of batches from it.

    python tools/data_memory.py --dataset food101 [--data-path DIR] [--image-size 128]

Prints a table: split sizes, whether each split is memory-mapped, seconds to load (the first
run builds the cache), and the process's peak resident memory, split into private (anonymous)
memory and file-backed pages of the cache (clean page cache the kernel can drop at any time).
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import cfg  # noqa: E402
from data.loader import BatchLoader  # noqa: E402
from data.registry import SubsetSpec, load_dataset  # noqa: E402


def memory_status() -> dict[str, float]:
    """Current RssAnon / RssFile in MiB (Linux), and the peak resident set (ru_maxrss)."""
    status = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "VmHWM"):
                status[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    status["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return status


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-path", default=None)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--val-fraction", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=128)
    args = p.parse_args()
    root = Path(args.data_path) if args.data_path else cfg.DATA_PATH
    t0 = time.perf_counter()
    data = load_dataset(args.dataset, root, image_size=args.image_size, subset=SubsetSpec(val_fraction=args.val_fraction))
    load_s = time.perf_counter() - t0
    after_load = memory_status()
    t1 = time.perf_counter()
    checksum = 0
    for images, _ in BatchLoader(data.train, args.batch_size, torch.device("cpu"), shuffle=True, seed=0):
        checksum += int(images[:, 0, 0, 0].sum())
    epoch_s = time.perf_counter() - t1
    after_epoch = memory_status()
    print("| dataset | split | images | GB decoded | memory-mapped |")
    print("|---|---|---|---|---|")
    for name in ("train", "val", "test"):
        split = getattr(data, name)
        if split is not None:
            mapped = _is_mapped(split.images)
            print(f"| {args.dataset} | {name} | {len(split)} | {split.images.numel() / 2**30:.2f} | {mapped} |")
    print()
    print("| phase | seconds | RssAnon MiB | RssFile MiB | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for phase, secs, st in (("load", load_s, after_load), ("one train epoch (cpu)", epoch_s, after_epoch)):
        print(f"| {phase} | {secs:.1f} | {st.get('RssAnon', float('nan')):.0f} | {st.get('RssFile', float('nan')):.0f} | {st['peak_rss']:.0f} |")


def _is_mapped(images: torch.Tensor) -> bool:
    """Whether the tensor's memory lies in a file mapping of the cache folder (Linux)."""
    address = images.data_ptr()
    try:
        for line in Path("/proc/self/maps").read_text().splitlines():
            parts = line.split()
            start, end = (int(x, 16) for x in parts[0].split("-"))
            if start <= address < end:
                return len(parts) >= 6 and parts[5].endswith(".npy")
    except OSError:
        pass
    return False


if __name__ == "__main__":
    main()
