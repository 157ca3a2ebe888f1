"""The benchmark's table: one row per network and precision, floor, engine and straightforward side by side."""
from __future__ import annotations


def fmt_phases(p: dict) -> str:
    return f"{p['mapping']:.1f}/{p['train']:.1f}/{p['test']:.1f}"


def table(rows: list[dict]) -> str:
    head = (
        "| network | precision | floor fwd / train img/s | floor epoch s | full epoch s (map/train/test) | full img/s"
        " | full peak MB | straightforward epoch s (map/train/test) | straightforward peak MB | full/floor | straightforward/full"
        " | CPU-s floor / full / straightforward | CPU full/floor | CPU straightforward/full"
        " | straightforward network alone s | bound: network alone/floor | engine epoch timed |"
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
        cpu_cells += f" {fu.get('timed', 'the last epoch')} |"
        lines.append(
            f"| {r['network']}{'' if r['pretrained'] else ' (random init)'} | {r['precision']}"
            f" | {fl['forward_images_per_s']:.1f} / {fl['train_images_per_s']:.1f} | {fl['epoch_seconds']:.1f}"
            f" | {fu['epoch_seconds']:.1f} ({fmt_phases(fu['phase_seconds'])}) | {fu['images_per_s']:.1f}"
            f" | {fu['peak_memory_mb']:.0f} | {sf_cells} | {fu['epoch_seconds'] / fl['epoch_seconds']:.2f}x | {ratio_sf} |" + cpu_cells
        )
    return "\n".join(lines)


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-").replace("--", "-")[:60]
