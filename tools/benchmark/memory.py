"""The memory mode of the benchmark: peak memory and epoch time per ``--micro-batch`` / ``--recompute`` setting.

Each configuration runs one engine epoch in a fresh process (peak resident memory is per process)
without the floor measurement, whose full-batch step would set that peak. With ``repeats`` > 1 the
configurations are measured round-robin, so slow phases of a shared machine spread over all of
them, and the table shows medians. CPU seconds (of the epoch's process) sit beside the wall time:
on a machine shared with other jobs they are the steadier basis for the ratios.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable

Worker = Callable[[str, dict], dict]


def configurations(micro_batches: list[int], recompute: bool) -> list[dict]:
    """Every micro-batch size, each also with ``--recompute`` when asked."""
    plain = [{"micro_batch": m, "recompute": False} for m in micro_batches]
    return plain + ([{"micro_batch": m, "recompute": True} for m in micro_batches] if recompute else [])


def engine_args(config: dict) -> list[str]:
    return ["--micro-batch", str(config["micro_batch"])] + (["--recompute"] if config["recompute"] else [])


def measure_memory(run_worker: Worker, base: dict, micro_batches: list[int], recompute: bool, repeats: int) -> list[dict]:
    """One row per configuration: every run's epoch time and peak memory, and their medians."""
    configs = configurations(micro_batches, recompute)
    runs: list[list[dict]] = [[] for _ in configs]
    for repeat in range(repeats):
        for config, results in zip(configs, runs):
            label = f"micro-batch {config['micro_batch']}{' + recompute' if config['recompute'] else ''}"
            print(f"{base['network']}: {label}, run {repeat + 1}/{repeats} ...", flush=True)
            out = run_worker("engine", {**base, "floor": False, "extra_args": engine_args(config)})
            results.append(out["full"] | {"precision": out["precision"]})
    rows = []
    for config, results in zip(configs, runs):
        rows.append({
            "network": base["network"], "pretrained": base["pretrained"], "precision": results[0]["precision"],
            "batch_size": base["batch_size"], **config,
            "epoch_seconds": [r["epoch_seconds"] for r in results],
            "epoch_cpu_seconds": [r["epoch_cpu_seconds"] for r in results],
            "phase_seconds": [r["phase_seconds"] for r in results],
            "peak_memory_mb": [r["peak_memory_mb"] for r in results],
            "test_acc": [r["test_acc"] for r in results],
            "median_epoch_seconds": statistics.median(r["epoch_seconds"] for r in results),
            "median_epoch_cpu_seconds": statistics.median(r["epoch_cpu_seconds"] for r in results),
            "median_peak_memory_mb": statistics.median(r["peak_memory_mb"] for r in results),
        })  # fmt: skip
    return rows


def memory_table(rows: list[dict]) -> str:
    """Medians per configuration, and their ratios to the same network's whole-batch run without recompute."""
    head = (
        "| network | precision | batch | micro-batch | recompute | epoch s, median (runs) | epoch CPU-s, median | peak MB, median (runs)"
        " | epoch / whole batch | CPU-s / whole batch | peak / whole batch | test acc % |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        whole = next(
            (w for w in rows if w["network"] == r["network"] and w["precision"] == r["precision"]
             and w["micro_batch"] >= w["batch_size"] and not w["recompute"]),
            None,
        )  # fmt: skip
        runs_s = ", ".join(f"{t:.1f}" for t in r["epoch_seconds"])
        runs_mb = ", ".join(f"{m:.0f}" for m in r["peak_memory_mb"])
        ratio_s = f"{r['median_epoch_seconds'] / whole['median_epoch_seconds']:.2f}x" if whole else "-"
        ratio_cpu = f"{r['median_epoch_cpu_seconds'] / whole['median_epoch_cpu_seconds']:.2f}x" if whole else "-"
        ratio_mb = f"{r['median_peak_memory_mb'] / whole['median_peak_memory_mb']:.2f}x" if whole else "-"
        accs = ", ".join(f"{a:.2f}" for a in sorted(set(r["test_acc"])))
        lines.append(
            f"| {r['network']}{'' if r['pretrained'] else ' (random init)'} | {r['precision']} | {r['batch_size']}"
            f" | {r['micro_batch']} | {'yes' if r['recompute'] else 'no'} | {r['median_epoch_seconds']:.1f} ({runs_s})"
            f" | {r['median_epoch_cpu_seconds']:.0f} | {r['median_peak_memory_mb']:.0f} ({runs_mb}) | {ratio_s} | {ratio_cpu} | {ratio_mb} | {accs} |"
        )
    return "\n".join(lines)
