"""Figures and the engine's per-epoch snapshots: hand-checked heatmap data, every plot renders."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_args
from PIL import Image
from tool_fixtures import fake_run

from runner.cli import main as run_method
from runner.snapshots import PredictionCounts, heatmap_data, load_test_counts, save_prompt_png, save_test_counts, snapshot_due
from tools import figures as plots
from tools.figures import common as figure_common


def assert_png(path: Path) -> None:
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 10  # something was drawn


def test_snapshot_schedule():
    assert [e for e in range(1, 201) if snapshot_due(e, 200)] == [1, 2, 3] + list(range(10, 201, 10))
    assert [e for e in range(1, 8) if snapshot_due(e, 7)] == [1, 2, 3, 7]


def test_heatmap_data_by_hand():
    # 4 source classes, 2 target classes; target 0 maps to source 2, target 1 to source 0
    counts = np.array([[1, 6], [0, 0], [3, 0], [0, 2]])
    heat = heatmap_data(counts, [2, 0], num_targets=10, num_frequent=5)
    assert heat.targets == [0, 1] and heat.sources == [2, 0, 3]  # mapped first, then others by share
    np.testing.assert_allclose(heat.shares, [[0.75, 0.25, 0.0], [0.0, 0.75, 0.25]])
    assert heat.mapped_col == [0, 1]
    no_map = heatmap_data(counts, None, num_frequent=2)
    assert no_map.sources == [0, 2] and no_map.mapped_col == [None, None]  # 0.25+0.75 > 0.75 > 0.25 (tie: 3 later)


def test_test_counts_round_trip(tmp_path):
    counts = np.zeros((5, 3), dtype=np.int64)
    counts[4, 0], counts[1, 2] = 7, 3
    data = PredictionCounts(3, counts, [4, 0, 1], [f"s{i}" for i in range(5)], ["a", "b", "c"])
    save_test_counts(tmp_path / "c.pt", data)
    back = load_test_counts(tmp_path / "c.pt")
    assert back.epoch == 3 and back.mapped == [4, 0, 1] and back.target_names == ["a", "b", "c"]
    np.testing.assert_array_equal(back.counts, counts)


@pytest.fixture
def synthetic_run(tmp_path: Path) -> Path:
    """A finished ILM-VP run with every per-epoch file, written without training."""
    run = fake_run(tmp_path / "res", "ilm_vp", "cifar10", "resnet18", 1, 55.0, epochs=3)
    targets, sources = [f"target {i}" for i in range(12)], [f"source {i}" for i in range(30)]
    rng = np.random.default_rng(0)
    rows = []
    for epoch in (1, 2, 3):
        mapped = [(t + epoch * (t % 3 == 0)) % 30 for t in range(12)]
        (run / "mappings" / f"epoch_{epoch:03d}.json").write_text(json.dumps({targets[t]: sources[s] for t, s in enumerate(mapped)}))
        save_prompt_png(run / "prompts" / f"epoch_{epoch:03d}.png", torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(epoch)))
        save_test_counts(run / "test_counts" / f"epoch_{epoch:03d}.pt", PredictionCounts(epoch, rng.integers(0, 4, (30, 12)), mapped, sources, targets))
        rows.append({"epoch": epoch, "train_loss": 3.0 - epoch / 2, "test_acc": 50.0 + epoch, "mapping_changes": None if epoch == 1 else 4})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


@pytest.mark.slow
@pytest.mark.parametrize("figure", ["prompts", "mapping", "text-prompts", "curves", "heatmap"])
def test_run_figures_render(figure, synthetic_run, tmp_path):
    out = tmp_path / f"{figure}.png"
    assert plots.main([figure, str(synthetic_run), "-o", str(out)]) == 0
    assert_png(out)


def test_mapping_picks_changing_targets_and_checks_names(synthetic_run, tmp_path):
    mappings = plots.load_mappings(synthetic_run)
    assert plots.choose_targets(mappings, None, 3) == ["target 0", "target 3", "target 6"]
    assert plots.main(["mapping", str(synthetic_run), "--targets", "nope", "-o", str(tmp_path / "x.png")]) == 2
    assert plots.pick_epochs(list(range(1, 101)), None, 5) == [1, 26, 51, 75, 100]


def test_prompts_fall_back_to_checkpoints(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    mask = torch.ones(1, 32, 32)
    mask[:, 8:24, 8:24] = 0
    theta = torch.randn(3, 32, 32)
    torch.save({"epoch": 4, "model": {"input_transform.theta": theta, "input_transform.mask": mask}}, run / "ckpt.pth")
    images = plots.prompt_images(run)
    assert list(images) == ["epoch 4 (ckpt.pth)"]
    expected = (torch.sigmoid(theta) * mask * 255).byte().permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(images["epoch 4 (ckpt.pth)"], expected)
    plots.plot_prompts(run, tmp_path / "p.png")
    assert_png(tmp_path / "p.png")
    assert plots.main(["prompts", str(tmp_path / "empty_dir_missing"), "-o", str(tmp_path / "e.png")]) == 2


@pytest.mark.slow
def test_sweep_figures_render(tmp_path):
    root = tmp_path / "res"
    for dataset, (ilm, flm) in {"cifar10": (60.0, 55.0), "gtsrb": (70.0, 72.0)}.items():
        for seed in (1, 2):
            fake_run(root, "ilm_vp", dataset, "resnet18", seed, ilm + seed)
            fake_run(root, "flm_vp", dataset, "resnet18", seed, flm + seed)
    for fraction in (0.25, 0.5):
        for seed in (1, 2):
            fake_run(root, "ilm_vp", "gtsrb", "resnet18", seed, 40.0 + 40 * fraction, train_fraction=fraction)
            fake_run(root, "flm_vp", "gtsrb", "resnet18", seed, 35.0 + 40 * fraction, train_fraction=fraction)
    assert plots.main(["gain", str(root), "--network", "resnet18", "--where", "train_fraction=null", "-o", str(tmp_path / "g.png")]) == 0
    assert_png(tmp_path / "g.png")
    assert plots.main(["fraction", str(root), "--dataset", "gtsrb", "--network", "resnet18", "-o", str(tmp_path / "f.png")]) == 0
    assert_png(tmp_path / "f.png")
    assert plots.main(["fraction", str(root), "--dataset", "dtd", "-o", str(tmp_path / "none.png")]) == 2


@pytest.mark.slow
def test_real_tiny_run_writes_snapshots_and_every_figure_renders(tmp_path, cifar_root):
    assert run_method("ilm_vp", tiny_args(tmp_path / "res", cifar_root, "--epochs", "3")) == 0
    (run,) = [p.parent for p in (tmp_path / "res").rglob("results.json")]
    assert sorted(p.name for p in (run / "prompts").iterdir()) == ["epoch_001.png", "epoch_002.png", "epoch_003.png"]
    counts = load_test_counts(run / "test_counts" / "epoch_003.pt")
    assert counts.counts.shape == (20, 10) and counts.counts.sum() == 20  # every test image counted once
    mapping = json.loads((run / "mappings" / "epoch_003.json").read_text())
    assert [counts.source_names[s] for s in counts.mapped] == list(mapping.values())
    ckpt = torch.load(run / "ckpt.pth", map_location="cpu", weights_only=False)["model"]
    saved = np.asarray(Image.open(run / "prompts" / "epoch_003.png"))
    pattern = torch.sigmoid(ckpt["input_transform.theta"]) * ckpt["input_transform.mask"]
    assert np.abs(saved.astype(float) - pattern.permute(1, 2, 0).numpy() * 255).max() <= 0.5 + 1e-6
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert [e.step for e in events.Images("mapping/test_heatmap")] == [1, 2, 3]
    for figure in ("prompts", "mapping", "curves", "heatmap"):
        assert plots.main([figure, str(run), "-o", str(tmp_path / f"{figure}.png")]) == 0
        assert_png(tmp_path / f"{figure}.png")


@pytest.fixture
def kept_figure(monkeypatch):
    """The last figure a plot function saved, kept open for inspection."""
    kept = {}

    def save(fig, out):
        kept["fig"] = fig
        return Path(out)

    monkeypatch.setattr(figure_common, "save", save)  # every figure saves through it
    return kept


def test_gain_says_what_it_compares_with_error_bars(tmp_path, kept_figure):
    from tools.tables import Cell

    a = Cell("cifar10", "efficientnet_lite0", "ilm_vp", [1, 2, 3], {1: 60.0, 2: 64.0, 3: 59.0})
    b = Cell("cifar10", "efficientnet_lite0", "flm_vp", [1, 2, 3], {1: 55.0, 2: 61.0, 3: 57.0})
    gain, error, n = plots.gain_with_error(a, b)  # paired per-seed differences 5, 3, 2
    assert gain == pytest.approx(10 / 3) and error == pytest.approx(np.std([5, 3, 2], ddof=1)) and n == 3
    root = tmp_path / "res"
    for seed, (ilm, flm) in zip((1, 2, 3), ((60.0, 55.0), (64.0, 61.0), (59.0, 57.0))):
        fake_run(root, "ilm_vp", "cifar10", "efficientnet_lite0", seed, ilm)
        fake_run(root, "flm_vp", "cifar10", "efficientnet_lite0", seed, flm)
    plots.plot_gain(root, tmp_path / "g.png", compare={"efficientnet_lite0": "resnet18"})
    ax = kept_figure["fig"].axes[0]
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels[0].startswith("ours, efficientnet_lite0 (mean ± std over 3 seeds)")
    assert labels[1].startswith("paper, ResNet-18")  # the paper's network is named, not implied
    assert "different networks" in ax.get_title()
    caps = [line for line in ax.lines if len(line.get_xdata()) == 1]  # error-bar caps: two per bar
    assert len(caps) == 4
    paper_gain = 65.5 - 65.7  # Table 1, CIFAR-10, ResNet-18: ILM-VP minus FLM-VP
    assert [round(p.get_height(), 2) for p in ax.patches] == [round(10 / 3, 2), round(paper_gain, 2)]


def test_images_carry_colour_scales(synthetic_run, tmp_path, kept_figure):
    plots.plot_prompts(synthetic_run, tmp_path / "p.png")
    *panels, bar = kept_figure["fig"].axes
    assert len(panels) == 3 and "pattern value" in bar.get_ylabel()
    low, high = bar.get_ylim()
    assert 0 <= low < high <= 1
    plots.plot_heatmap(synthetic_run, tmp_path / "h.png")
    assert "share of the target class's test images" in kept_figure["fig"].axes[-1].get_ylabel()
