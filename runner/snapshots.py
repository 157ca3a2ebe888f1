"""Per-epoch snapshots that the figures need and checkpoints do not keep.

``ckpt.pth`` holds only the latest prompt, so on a sparse schedule of epochs (the first three,
every tenth, the last) a run also writes

- ``prompts/epoch_XXX.png``: the learned prompt as an 8-bit image, drawn by the prompt's
  ``picture()`` (:class:`models.patterns.PromptPicture`): ``pad``'s ``sigmoid(theta) * mask`` as it
  is (the paper's Figure 1, row 1); a signed pattern (watermark, low-rank, SMM, the CLIP prompts)
  centred at grey and scaled by its largest ``|value|``, which the PNG keeps as its text field
  ``prompt_scale`` (with ``prompt_units``) for the figure's title;
- ``test_counts/epoch_XXX.pt``: ``counts[s, t]``, how many test images of target class
  ``t`` the network predicts (top-1) as source class ``s``, with the mapping of that epoch.

Every epoch the mapping heatmap drawn from those counts also goes to TensorBoard as an image.
The schedule keeps a 200-epoch run at 23 small files of each kind.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from algorithms.outputs import PredictionCounts
from common.files import atomic_write_bytes, save_checkpoint
from models.patterns import PromptPicture

PROMPTS_DIR = "prompts"
COUNTS_DIR = "test_counts"


def snapshot_due(epoch: int, epochs: int) -> bool:
    """Whether the 1-based ``epoch`` of a run of ``epochs`` gets files: 1-3, every 10th, the last."""
    return epoch <= 3 or epoch % 10 == 0 or epoch == epochs


# ---------------------------------------------------------------------------------------------
# Prompt pattern


SCALE_KEY, UNITS_KEY = "prompt_scale", "prompt_units"  # PNG text fields of a signed picture


def prompt_picture(model: torch.nn.Module) -> PromptPicture | None:
    """The input transform's snapshot picture (its ``picture()``), or None if it draws none.

    An input transform with only a ``pattern()`` in [0, 1] is drawn as it is."""
    transform = getattr(model, "input_transform", None)
    picture = getattr(transform, "picture", None)
    if callable(picture):
        return picture()
    pattern = getattr(transform, "pattern", None)
    return PromptPicture(pattern().detach().float().cpu().clamp(0, 1)) if callable(pattern) else None


def pattern_to_image(pattern: torch.Tensor) -> np.ndarray:
    """``[C, H, W]`` in [0, 1] -> uint8 ``[H, W, C]`` (``[H, W]`` for one channel)."""
    array = (pattern.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return array[..., 0] if array.shape[-1] == 1 else array


def save_prompt_png(path: Path, picture: PromptPicture | torch.Tensor) -> None:
    """``picture`` as an 8-bit PNG (a tensor: an image in [0, 1]); a signed picture's scale and
    units go into the PNG's text fields :data:`SCALE_KEY` and :data:`UNITS_KEY`."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    if isinstance(picture, torch.Tensor):
        picture = PromptPicture(picture)
    info = PngInfo()
    if picture.scale is not None:
        info.add_text(SCALE_KEY, repr(picture.scale))
        info.add_text(UNITS_KEY, picture.units)
    buffer = io.BytesIO()
    Image.fromarray(pattern_to_image(picture.image)).save(buffer, format="PNG", pnginfo=info)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())


def read_prompt_png(path: Path) -> tuple[np.ndarray, PromptPicture]:
    """A snapshot back: the 8-bit image and its picture (image in [0, 1], scale and units)."""
    from PIL import Image

    with Image.open(path) as png:
        array = np.asarray(png)
        text = dict(getattr(png, "text", {}) or {})
    image = torch.from_numpy(array.astype(np.float32) / 255)
    image = image[None] if image.ndim == 2 else image.permute(2, 0, 1)
    scale = float(text[SCALE_KEY]) if SCALE_KEY in text else None
    return array, PromptPicture(image, scale, text.get(UNITS_KEY, "pixel"))


# ---------------------------------------------------------------------------------------------
# Test-set prediction counts


def save_test_counts(path: Path, data: PredictionCounts) -> None:
    """Stored sparse (test predictions concentrate on few source classes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    counts = torch.as_tensor(data.counts)
    nonzero = counts.nonzero().t()
    save_checkpoint(
        path,
        {
            "epoch": data.epoch,
            "shape": list(counts.shape),
            "indices": nonzero.to(torch.int32),
            "values": counts[nonzero[0], nonzero[1]].to(torch.int32),
            "mapped": data.mapped,
            "source_names": list(data.source_names),
            "target_names": list(data.target_names),
        },
    )


def load_test_counts(path: Path) -> PredictionCounts:
    state = torch.load(path, map_location="cpu", weights_only=True)
    counts = np.zeros(state["shape"], dtype=np.int64)
    rows, cols = state["indices"].long().numpy()
    counts[rows, cols] = state["values"].long().numpy()
    return PredictionCounts(int(state["epoch"]), counts, state["mapped"], list(state["source_names"]), list(state["target_names"]))


# ---------------------------------------------------------------------------------------------
# The mapping heatmap


@dataclass
class Heatmap:
    shares: np.ndarray  # [rows, cols]: share of a target class's test images predicted as each source
    targets: list[int]  # target index per row
    sources: list[int]  # source index per column: mapped sources first, then the most frequent others
    mapped_col: list[int | None]  # column of each row's mapped source


def heatmap_data(counts: np.ndarray, mapped: list[int] | None, num_targets: int = 10, num_frequent: int = 5) -> Heatmap:
    """Rows: the first ``num_targets`` target classes; columns: their mapped source classes, then
    the ``num_frequent`` other source classes receiving the largest total share (ties: lowest index)."""
    counts = np.asarray(counts, dtype=np.float64)
    targets = list(range(min(num_targets, counts.shape[1])))
    totals = counts[:, targets].sum(axis=0)
    shares_all = counts[:, targets] / np.maximum(totals, 1.0)  # [S, rows]
    sources: list[int] = []
    for t in targets:
        if mapped is not None and mapped[t] not in sources:
            sources.append(mapped[t])
    weight = shares_all.sum(axis=1)
    weight[sources] = -1.0
    order = np.lexsort((np.arange(len(weight)), -weight))  # descending share, then lowest index
    sources += [int(s) for s in order[:num_frequent] if weight[s] > 0]
    shares = shares_all[sources].T
    mapped_col = [sources.index(mapped[t]) if mapped is not None else None for t in targets]
    return Heatmap(shares, targets, sources, mapped_col)


def _short(names: list[str], index: int, width: int = 18) -> str:
    name = names[index] if index < len(names) else f"#{index}"
    return name if len(name) <= width else name[: width - 1] + "…"


def draw_heatmap(ax, data: PredictionCounts, num_targets: int = 10, num_frequent: int = 5) -> Heatmap:
    """Draw the heatmap on a matplotlib axis; mapped cells are outlined in red."""
    from matplotlib.patches import Rectangle

    heat = heatmap_data(data.counts, data.mapped, num_targets, num_frequent)
    image = ax.imshow(heat.shares, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    bar = ax.figure.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    bar.set_label("share of the target class's test images", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    for r in range(heat.shares.shape[0]):
        for c in range(heat.shares.shape[1]):
            value = heat.shares[r, c]
            if value >= 0.005:
                ax.text(c, r, f"{100 * value:.0f}", ha="center", va="center", fontsize=7, color="white" if value < 0.6 else "black")
        if heat.mapped_col[r] is not None:
            ax.add_patch(Rectangle((heat.mapped_col[r] - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
    ax.set_yticks(range(len(heat.targets)), [_short(data.target_names, t) for t in heat.targets], fontsize=7)
    ax.set_xticks(range(len(heat.sources)), [_short(data.source_names, s) for s in heat.sources], fontsize=7, rotation=60, ha="right")
    ax.set_xlabel("source class (top-1 prediction); red: mapped")
    ax.set_ylabel("target class")
    ax.set_title(f"epoch {data.epoch}: % of test images per source class", fontsize=9)
    return heat


def heatmap_figure(data: PredictionCounts, num_targets: int = 10, num_frequent: int = 5):
    from matplotlib.figure import Figure

    cols = min(num_targets, data.counts.shape[1]) + num_frequent
    fig = Figure(figsize=(max(4.0, 0.45 * cols + 2.0), 4.5), layout="constrained")
    draw_heatmap(fig.add_subplot(), data, num_targets, num_frequent)
    return fig


# ---------------------------------------------------------------------------------------------
# What the trainer calls after each epoch


def write_epoch_snapshots(run_dir, model: torch.nn.Module, epoch: int, epochs: int, data: PredictionCounts | None) -> None:
    """Save the scheduled files and log the heatmap to TensorBoard (main rank only)."""
    if not run_dir.enabled:
        return
    if snapshot_due(epoch, epochs):
        picture = prompt_picture(model)
        if picture is not None:
            save_prompt_png(run_dir.file(PROMPTS_DIR) / f"epoch_{epoch:03d}.png", picture)
        if data is not None:
            save_test_counts(run_dir.file(COUNTS_DIR) / f"epoch_{epoch:03d}.pt", data)
    writer = run_dir.tensorboard()
    if data is not None and writer is not None:
        try:
            figure = heatmap_figure(data)
        except ImportError:  # matplotlib is optional for training
            return
        writer.add_figure("mapping/test_heatmap", figure, epoch)
        writer.flush()
