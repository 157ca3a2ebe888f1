"""Figures of one run folder: the prompt over epochs, the label mapping, training curves, the prediction heatmap."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np

from runner.records import METRICS, read_metrics
from runner.snapshots import COUNTS_DIR, PROMPTS_DIR, draw_heatmap, load_test_counts, read_prompt_png
from tools.figures import common
from tools.figures.common import PlotError, _epoch_files, pick_epochs, pyplot, run_title

# ---------------------------------------------------------------------------------------------
# 1. Prompt pattern over epochs


def prompt_images(run: Path) -> dict[str, np.ndarray]:
    """Label -> HxW(x3) image: ``prompts/epoch_XXX.png`` snapshots, else the checkpoints' prompt."""
    return {label: image for label, (image, _) in prompt_snapshots(run).items()}


def prompt_snapshots(run: Path) -> dict[str, tuple[np.ndarray, float | None]]:
    """Label -> (HxW(x3) image, the scale of a signed picture or None), as :func:`prompt_images`."""
    snapshots = _epoch_files(run / PROMPTS_DIR, ".png")
    if snapshots:
        out = {}
        for e, p in snapshots.items():
            image, picture = read_prompt_png(p)
            out[f"epoch {e}"] = (image, picture.scale)
        return out
    import torch

    from common.files import load_checkpoint

    images = {}
    for name in ("best.pth", "ckpt.pth"):
        if (run / name).is_file():
            state = load_checkpoint(run / name)  # verified against its checksum
            theta, mask = state["model"].get("input_transform.theta"), state["model"].get("input_transform.mask")
            if theta is not None:
                pattern = torch.sigmoid(theta.float()) * (mask if mask is not None else 1.0)
                images[f"epoch {state['epoch']} ({name})"] = ((pattern.clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy(), None)
    return images


def stretch(images: list[np.ndarray]) -> tuple[list[np.ndarray], tuple[float, float]]:
    """One linear contrast stretch for all images, from the range of their nonzero (frame) pixels:
    a prompt learned from a zero start stays near mid-gray, its structure invisible unstretched.

    Returns the images and the pixel range ``(low, high)`` (0-255) that now spans black to white.
    """
    frame = np.concatenate([img[img > 0].ravel() for img in images] or [np.zeros(1)])
    low, high = (float(frame.min()), float(frame.max())) if frame.size else (0.0, 255.0)
    if high - low < 1:
        return images, (0.0, 255.0)
    out = []
    for img in images:
        scaled = (img.astype(np.float64) - low) * (255.0 / (high - low))
        out.append(np.where(img > 0, np.clip(scaled, 0, 255), 0).astype(np.uint8))
    return out, (low, high)


def plot_prompts(run: Path, out: Path, epochs: list[int] | None = None, most: int = 8, contrast: bool = True) -> Path:
    """The prompt over epochs. A signed snapshot (grey = 0, scaled by its largest ``|value|``) is
    shown as it is, its scale in its panel's title; only ``[0, 1]`` patterns are contrast stretched."""
    snapshots = prompt_snapshots(run)
    images = {label: image for label, (image, _) in snapshots.items()}
    scales = {label: scale for label, (_, scale) in snapshots.items()}
    if not images:
        raise PlotError(f"{run} has no prompt snapshots (prompts/) and no checkpoint with a pad prompt")
    labels = list(images)
    if labels[0].startswith("epoch ") and labels[0].split()[1].isdigit() and "(" not in labels[0]:
        chosen = pick_epochs([int(label.split()[1]) for label in labels], epochs, most)
        labels = [f"epoch {e}" for e in chosen]
    shown = [images[label] for label in labels]
    low, high = 0.0, 255.0
    signed = any(scales[label] is not None for label in labels)
    contrast = contrast and not signed  # a signed picture already spans its range, centred at grey
    if contrast:
        shown, (low, high) = stretch(shown)
    plt = pyplot()
    import matplotlib

    fig, axes = plt.subplots(1, len(labels), figsize=(max(4.0, 2.2 * len(labels)) + 1.2, 2.8), squeeze=False)
    for ax, label, image in zip(axes[0], labels, shown):
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
        scale = scales[label]
        ax.set_title(label if scale is None else f"{label}\n±{scale:.3g}", fontsize=9)
        ax.axis("off")
    # the scale of every channel: black..white (dark..full red, green, blue) is this range of the pattern
    if signed:  # each panel: black -s, grey 0, white +s, s in its title
        scale = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(-1.0, 1.0), cmap="gray")
        label = "pattern value / the panel's ±scale, each channel"
    else:
        scale = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(low / 255, high / 255), cmap="gray")
        label = "pattern value, each channel" + (" (stretched)" if contrast else "")
    bar = fig.colorbar(scale, ax=list(axes[0]), fraction=0.05, pad=0.02)
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)
    fig.suptitle(f"prompt pattern{' (contrast stretched)' if contrast else ''}\n{run_title(run)}", fontsize=9)
    return common.save(fig, out)


# ---------------------------------------------------------------------------------------------
# 2. Label-mapping evolution (CNN: source class; CLIP: chosen text prompt)


def load_mappings(run: Path) -> dict[int, dict[str, str]]:
    files = _epoch_files(run / "mappings", ".json")
    if not files:
        raise PlotError(f"{run} has no mappings/epoch_XXX.json")
    return {e: json.loads(p.read_text()) for e, p in files.items()}


def choose_targets(mappings: dict[int, dict[str, str]], targets: list[str] | None, most: int) -> list[str]:
    """``targets`` if given, else the ``most`` targets whose mapping changed most often (ties: class order)."""
    names = list(next(iter(mappings.values())))
    if targets:
        unknown = [t for t in targets if t not in names]
        if unknown:
            raise PlotError(f"unknown target class(es) {unknown}; classes: {', '.join(names[:20])}{' …' if len(names) > 20 else ''}")
        return targets
    epochs = sorted(mappings)
    changes = {t: sum(mappings[a].get(t) != mappings[b].get(t) for a, b in zip(epochs, epochs[1:])) for t in names}
    return sorted(names, key=lambda t: (-changes[t], names.index(t)))[:most]


def plot_mapping(
    run: Path, out: Path, targets: list[str] | None = None, epochs: list[int] | None = None,
    most_targets: int = 4, most_epochs: int = 10, wrap: int = 14, what: str = "source class",
) -> Path:  # fmt: skip
    """A grid: rows = target classes, columns = epochs, text = mapped source; orange = changed."""
    mappings = load_mappings(run)
    chosen = pick_epochs(list(mappings), epochs, most_epochs)
    rows = choose_targets(mappings, targets, most_targets)
    all_epochs = sorted(mappings)
    changed = np.zeros((len(rows), len(chosen)))
    for c, epoch in enumerate(chosen):
        previous = all_epochs[all_epochs.index(epoch) - 1] if all_epochs.index(epoch) > 0 else None
        for r, target in enumerate(rows):
            changed[r, c] = previous is not None and mappings[previous].get(target) != mappings[epoch].get(target)
    width = max(4.0, 1.3 * len(chosen) * wrap / 14 + 1.5)
    plt = pyplot()
    from matplotlib.colors import ListedColormap

    fig, ax = plt.subplots(figsize=(width, 0.9 * len(rows) + 1.4))
    ax.imshow(changed, cmap=ListedColormap(["#f2f2f2", "#ffc266"]), vmin=0, vmax=1, aspect="auto")
    for r, target in enumerate(rows):
        for c, epoch in enumerate(chosen):
            text = textwrap.fill(str(mappings[epoch].get(target, "–")), wrap, max_lines=3, placeholder="…")
            ax.text(c, r, text, ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(chosen)), [f"epoch {e}" for e in chosen], fontsize=8)
    ax.set_yticks(range(len(rows)), [textwrap.fill(t, 16) for t in rows], fontsize=8)
    ax.set_xticks(np.arange(len(chosen) + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(len(rows) + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=2)
    ax.tick_params(which="minor", length=0)
    ax.set_title(f"{what} per target class (orange: changed)\n{run_title(run)}", fontsize=9)
    fig.tight_layout()
    return common.save(fig, out)


# ---------------------------------------------------------------------------------------------
# 3. Training loss and mapping changes


def load_metrics(run: Path) -> list[dict]:
    if not (run / METRICS).is_file():
        raise PlotError(f"{run} has no {METRICS}")
    return read_metrics(run)


def plot_curves(runs: list[Path], out: Path) -> Path:
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 5), sharex=True)
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        rows = load_metrics(run)
        epochs = np.array([r["epoch"] for r in rows])
        label = run_title(run)
        top.plot(epochs, [r["train_loss"] for r in rows], marker="o", markersize=3, label=label)
        changes = [r.get("mapping_changes") for r in rows]
        bottom.bar(epochs + (i - (len(runs) - 1) / 2) * width, [c or 0 for c in changes], width=width, label=label)
    top.set_ylabel("training loss")
    top.legend(fontsize=7)
    top.grid(alpha=0.3)
    bottom.set_ylabel("mapping changes\n(targets remapped)")
    bottom.set_xlabel("epoch")
    bottom.grid(alpha=0.3, axis="y")
    bottom.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return common.save(fig, out)


# ---------------------------------------------------------------------------------------------
# 6. The mapping heatmap


def plot_heatmap(run: Path, out: Path, epoch: int | None = None, targets: int = 10, frequent: int = 5) -> Path:
    files = _epoch_files(run / COUNTS_DIR, ".pt")
    if not files:
        raise PlotError(f"{run} has no {COUNTS_DIR}/epoch_XXX.pt (written by runs of this version)")
    if epoch is None:
        epoch = max(files)
    if epoch not in files:
        raise PlotError(f"no test counts for epoch {epoch}; available: {list(files)}")
    data = load_test_counts(files[epoch])
    cols = min(targets, data.counts.shape[1]) + frequent
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * cols + 2.5), 4.8))
    draw_heatmap(ax, data, targets, frequent)
    fig.suptitle(run_title(run), fontsize=9)
    fig.tight_layout()
    return common.save(fig, out)
