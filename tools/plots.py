#!/usr/bin/env python
"""The paper's figures as PNG files, drawn from run folders.

    python tools/plots.py prompts  RUN -o docs/prompts.png          # prompt pattern over epochs (Fig. 1 row 1)
    python tools/plots.py mapping  RUN -o docs/mapping.png          # label mapping per epoch (Fig. 1 rows 2-4)
    python tools/plots.py curves   RUN [RUN ...] -o docs/curves.png # training loss, mapping changes (Fig. 1 row 5)
    python tools/plots.py gain     RESULTS -o docs/gain.png         # ILM-VP minus FLM-VP per dataset (Fig. 2)
    python tools/plots.py fraction RESULTS --dataset gtsrb -o docs/fraction.png  # accuracy vs data (Fig. 3)
    python tools/plots.py heatmap  RUN -o docs/heatmap.png          # test predictions on source classes
    python tools/plots.py text-prompts RUN -o docs/text_prompts.png # CLIP: chosen template per class

RUN is one run folder (``<results>/<method>/<dataset>/<network>/<run id>``), RESULTS a results root.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from common.errors import UserError  # noqa: E402
from runner.config import HelpFormatter, add_hidden_alias, tool_parser  # noqa: E402
from runner.snapshots import COUNTS_DIR, PROMPTS_DIR, draw_heatmap, load_test_counts, read_prompt_png  # noqa: E402
from tools.make_table import METHOD_NAMES, NETWORK_NAMES, build_cells, collect_runs, layout, matches, missing_report, parse_where  # noqa: E402


class PlotError(Exception):
    """Nothing to draw: a one-line message for the user."""


def _epoch_files(folder: Path, suffix: str) -> dict[int, Path]:
    found = {}
    for path in folder.glob(f"epoch_*{suffix}"):
        match = re.fullmatch(rf"epoch_(\d+){re.escape(suffix)}", path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def pick_epochs(available: list[int], wanted: list[int] | None, most: int) -> list[int]:
    """``wanted`` if given (must exist), else at most ``most`` evenly spread, first and last included."""
    if wanted:
        missing = [e for e in wanted if e not in available]
        if missing:
            raise PlotError(f"no snapshot for epoch(s) {missing}; available: {available}")
        return list(wanted)
    if len(available) <= most:
        return list(available)
    index = np.unique(np.linspace(0, len(available) - 1, most).round().astype(int))
    return [available[i] for i in index]


def run_title(run: Path) -> str:
    try:
        config = json.loads((run / "config.json").read_text())["config"]
        method = METHOD_NAMES.get(config["method"], config["method"])
        return f"{method}, {config['dataset']}, {NETWORK_NAMES.get(config['network'], config['network'])}, seed {config['seed']}"
    except (OSError, ValueError, KeyError):
        return run.name


def save(fig, out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


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
    return save(fig, out)


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
    fig, ax = plt.subplots(figsize=(width, 0.9 * len(rows) + 1.4))
    ax.imshow(changed, cmap=matplotlib.colors.ListedColormap(["#f2f2f2", "#ffc266"]), vmin=0, vmax=1, aspect="auto")
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
    return save(fig, out)


# ---------------------------------------------------------------------------------------------
# 3. Training loss and mapping changes


def load_metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise PlotError(f"{run} has no metrics.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(runs: list[Path], out: Path) -> Path:
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
    return save(fig, out)


# ---------------------------------------------------------------------------------------------
# 4. ILM-VP's gain over FLM-VP per dataset


def gain_with_error(a, b) -> tuple[float, float | None, int]:
    """``mean(a) - mean(b)`` with its standard deviation and the number of seeds behind it.

    With two or more seeds in both cells the deviation is that of the per-seed differences
    (paired by seed); otherwise it combines the two cells' deviations, when both have one.
    """
    common = sorted(set(a.values) & set(b.values))
    if len(common) >= 2:
        diffs = [a.values[s] - b.values[s] for s in common]
        return float(np.mean(diffs)), float(np.std(diffs, ddof=1)), len(common)
    error = float(np.hypot(a.std, b.std)) if a.std is not None and b.std is not None else None
    return a.mean - b.mean, error, min(a.n, b.n)


def plot_gain(
    results: Path, out: Path, network: str | None = None, where: dict | None = None,
    compare: dict[str, str] | None = None, seeds: list[int] | None = None, better: str = "ilm_vp", base: str = "flm_vp",
) -> Path:  # fmt: skip
    """Bars of ``better - base`` per dataset: ours (error bar: std over seeds) beside the paper's
    (error bar: its two stds combined), each labelled with the network it was measured on."""
    runs = [r for r in collect_runs(results) if r.method in (better, base) and matches(r, where or {})]
    if network:
        runs = [r for r in runs if r.network == network]
    cells = build_cells(runs, None, seeds, compare=compare)
    report = missing_report(cells)
    rows, columns = layout(cells)
    bars = []  # (label, ours, ours_err, n, paper, paper_err, our network, paper network)
    for dataset in rows:
        for net in sorted({n for n, _ in columns}):
            a, b = cells.get((dataset, net, better)), cells.get((dataset, net, base))
            if a is None or b is None or a.mean is None or b.mean is None:
                continue
            gain, error, n = gain_with_error(a, b)
            paper = paper_error = None
            if a.paper and b.paper:
                paper = a.paper[0] - b.paper[0]
                paper_error = float(np.hypot(a.paper[1], b.paper[1])) if a.paper[1] is not None and b.paper[1] is not None else None
            paper_net = (compare or {}).get(net, net)
            bars.append((dataset if network else f"{dataset}\n{net}", gain, error, n, paper, paper_error, net, paper_net))
    if not bars:
        raise PlotError(f"no dataset under {results} has finished {better} and {base} runs" + (f" on {network}" if network else ""))
    for line in report:
        print(f"note: {line}", file=sys.stderr)
    name = lambda net: NETWORK_NAMES.get(net, net)  # noqa: E731
    x = np.arange(len(bars))
    has_paper = any(bar[4] is not None for bar in bars)
    width = 0.4 if has_paper else 0.6
    fig, ax = plt.subplots(figsize=(max(4.5, 0.8 * len(bars) + 2.0), 4.0))
    seeds_shown = sorted({bar[3] for bar in bars})
    seeds_text = f"{seeds_shown[0]}" if len(seeds_shown) == 1 else f"{seeds_shown[0]}-{seeds_shown[-1]}"
    our_nets = sorted({bar[6] for bar in bars})
    ours_label = f"ours, {', '.join(name(n) for n in our_nets)} (mean ± std over {seeds_text} seed{'s' if seeds_shown[-1] > 1 else ''})"
    errors = [bar[2] if bar[2] is not None else 0.0 for bar in bars]
    ours = ax.bar(x - (width / 2 if has_paper else 0), [bar[1] for bar in bars], width, yerr=errors, capsize=3, label=ours_label, color="#1f77b4")
    ax.bar_label(ours, fmt="%.1f", fontsize=7, padding=2)
    if has_paper:
        paper_nets = sorted({bar[7] for bar in bars if bar[4] is not None})
        paper_label = f"paper, {', '.join(name(n) for n in paper_nets)} (mean ± std over 3 runs)"
        paper_errors = [bar[5] if bar[5] is not None else 0.0 for bar in bars]
        paper = ax.bar(x + width / 2, [bar[4] if bar[4] is not None else 0 for bar in bars], width, yerr=paper_errors, capsize=3,
                       label=paper_label, color="#bbbbbb")  # fmt: skip
        ax.bar_label(paper, labels=["" if bar[4] is None else f"{bar[4]:.1f}" for bar in bars], fontsize=7, padding=2)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, [bar[0] for bar in bars], fontsize=8, rotation=30 if len(bars) > 6 else 0)
    ax.set_ylabel(f"{METHOD_NAMES.get(better, better)} − {METHOD_NAMES.get(base, base)}\n(test accuracy points)")
    title = f"gain of {METHOD_NAMES.get(better, better)} over {METHOD_NAMES.get(base, base)}"
    if has_paper and any(bar[6] != bar[7] for bar in bars if bar[4] is not None):
        title += "\n(ours and the paper's: different networks)"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save(fig, out)


# ---------------------------------------------------------------------------------------------
# 5. Accuracy against the fraction of training data


def plot_fraction(
    results: Path, out: Path, dataset: str, network: str | None = None, methods: tuple[str, ...] = ("ilm_vp", "flm_vp"),
    where: dict | None = None,
) -> Path:  # fmt: skip
    """Mean ± std over seeds of the best-epoch test accuracy per ``--train-fraction`` (none = 1)."""
    points: dict[str, dict[float, list[float]]] = {}
    for run in collect_runs(results):
        if run.method not in methods or run.dataset != dataset or (network and run.network != network):
            continue
        if run.status != "finished" or not matches(run, where or {}):
            continue
        fraction = json.loads(run.setting).get("train_fraction") or 1.0
        points.setdefault(run.method, {}).setdefault(float(fraction), []).append(run.results["best_test_acc"])
    if not points:
        raise PlotError(f"no finished {'/'.join(methods)} runs on {dataset} under {results}")
    fig, ax = plt.subplots(figsize=(5, 3.8))
    for method in methods:
        if method not in points:
            continue
        fractions = sorted(points[method])
        means = [np.mean(points[method][f]) for f in fractions]
        stds = [np.std(points[method][f], ddof=1) if len(points[method][f]) > 1 else 0.0 for f in fractions]
        ns = [len(points[method][f]) for f in fractions]
        label = f"{METHOD_NAMES.get(method, method)} (seeds per point: {min(ns)}–{max(ns)})" if min(ns) != max(ns) else f"{METHOD_NAMES.get(method, method)} ({ns[0]} seed{'s' if ns[0] > 1 else ''})"
        ax.errorbar([100 * f for f in fractions], means, yerr=stds, marker="o", capsize=3, label=label)
    ax.set_xlabel("training data used (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{dataset}" + (f", {NETWORK_NAMES.get(network, network)}" if network else ""), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, out)


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
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * cols + 2.5), 4.8))
    draw_heatmap(ax, data, targets, frequent)
    fig.suptitle(run_title(run), fontsize=9)
    fig.tight_layout()
    return save(fig, out)


# ---------------------------------------------------------------------------------------------
# Command line


def build_cli() -> argparse.ArgumentParser:
    p = tool_parser("The paper's figures as PNGs from run folders.")
    sub = p.add_subparsers(dest="figure", required=True, metavar="FIGURE")

    def command(name: str, help: str, many: bool = False):
        s = sub.add_parser(name, help=help, description=help, formatter_class=HelpFormatter)
        what = "results root" if name in ("gain", "fraction") else "run folder(s)" if many else "run folder"
        s.add_argument("source", nargs="+" if many else None, type=Path, metavar="RESULTS" if name in ("gain", "fraction") else "RUN", help=what)
        output = s.add_argument("-o", "--output", type=Path, default=None, metavar="FILE", help="PNG file to write (required)")
        add_hidden_alias(s, output, "--out")
        return s

    s = command("prompts", "learned prompt pattern over epochs")
    s.add_argument("--epochs", nargs="+", type=int, metavar="E", help="epochs to show (default: up to --max, spread evenly)")
    s.add_argument("--max", type=int, default=8, metavar="N", help="most epochs shown")
    s.add_argument("--raw", action="store_true", help="no contrast stretch")
    for name, what in (("mapping", "source class"), ("text-prompts", "text prompt")):
        s = command(name, f"{what} chosen for each target class over epochs")
        s.add_argument("--targets", nargs="+", metavar="CLASS", help="target class names (default: those that changed most)")
        s.add_argument("--epochs", nargs="+", type=int, metavar="E", help="epochs to show (default: up to --max-epochs, spread evenly)")
        s.add_argument("--max-targets", type=int, default=4, metavar="N", help="most target classes shown")
        s.add_argument("--max-epochs", type=int, default=10 if name == "mapping" else 6, metavar="N", help="most epochs shown")
    command("curves", "training loss and mapping changes against epochs", many=True)
    for name in ("gain", "fraction"):
        s = command(name, "ILM-VP minus FLM-VP per dataset, mean and std over seeds" if name == "gain" else "accuracy against training-data fraction")
        s.add_argument("--network", metavar="NAME", help="only runs of this network (default: every network, one bar each)")
        s.add_argument("--where", nargs="+", default=[], metavar="KEY=VALUE", help="only runs with these config values (default: all runs)")
        if name == "gain":
            s.add_argument("--seeds", nargs="+", type=int, metavar="S", help="seeds every bar needs (default: every seed found)")
            s.add_argument("--compare-network", nargs="+", default=[], metavar="NET=PAPER_NET",
                           help="put the paper's PAPER_NET numbers beside NET, named as such (default: the paper's numbers of the same network, if any)")  # fmt: skip
        else:
            s.add_argument("--dataset", required=True, metavar="NAME", help="the dataset of the runs")
            s.add_argument("--methods", nargs="+", default=["ilm_vp", "flm_vp"], metavar="NAME", help="one line each")
    s = command("heatmap", "share of each target class's test predictions per source class")
    s.add_argument("--epoch", type=int, help="the epoch shown (default: the last with counts)")
    s.add_argument("--targets", type=int, default=10, metavar="N", help="first N target classes")
    s.add_argument("--frequent", type=int, default=5, metavar="N", help="most frequent other source classes shown")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_cli().parse_args(argv)
        if args.output is None:
            raise UserError("the following arguments are required: -o/--output (see --help)")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        sources = args.source if isinstance(args.source, list) else [args.source]
        for source in sources:
            if not source.is_dir():
                raise PlotError(f"{source} is not a folder")
        if args.figure == "prompts":
            out = plot_prompts(args.source, args.output, args.epochs, args.max, contrast=not args.raw)
        elif args.figure in ("mapping", "text-prompts"):
            text = args.figure == "text-prompts"
            out = plot_mapping(args.source, args.output, args.targets, args.epochs, args.max_targets, args.max_epochs,
                               wrap=24 if text else 14, what="text prompt" if text else "source class")  # fmt: skip
        elif args.figure == "curves":
            out = plot_curves(args.source, args.output)
        elif args.figure == "gain":
            out = plot_gain(args.source, args.output, args.network, parse_where(args.where), parse_where(args.compare_network), args.seeds)
        elif args.figure == "fraction":
            out = plot_fraction(args.source, args.output, args.dataset, args.network, tuple(args.methods), parse_where(args.where))
        else:
            out = plot_heatmap(args.source, args.output, args.epoch, args.targets, args.frequent)
    except PlotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
