"""Hand-made run folders for the tests of tools/ and runner/records.py: a run as the engine writes it."""
from __future__ import annotations

import json
from pathlib import Path

from algorithms.methods import resolve_settings
from algorithms.settings import RunConfig

DATA_PATH = "/datasets"  # the data root of every hand-made run (as tests/test_help.py's pinned names)


def fake_run(
    root: Path, method: str, dataset: str, network: str, seed: int, acc: float | None, *,
    epochs: int = 5, done: int | None = None, val_acc: float | None = None, losses: bool = False, **config,
) -> Path:  # fmt: skip
    """A run folder as the engine writes it: finished when ``acc`` is given, else partial after ``done`` epochs.

    The data root is fixed (``DATA_PATH``) because it is part of the folder hash: the default one
    lies under the checkout, so the folder names (which tests/golden/ holds) would depend on where
    the repository is."""
    config.setdefault("data_path", DATA_PATH)
    cfg = resolve_settings(RunConfig(method=method, network=network, dataset=dataset, seed=seed, epochs=epochs, **config))
    path = cfg.run_path().relative_to(cfg.results_root)
    run = root / path
    (run / "mappings").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"config": cfg.to_dict(), "config_hash": cfg.config_hash()}))
    rows = epochs if acc is not None else (done or 0)
    extra = lambda e: {"train_loss": 2.0 / (e + 1) + seed / 10, "mapping_changes": e % 3} if losses else {}  # noqa: E731
    (run / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e + 1, **extra(e)}) + "\n" for e in range(rows)))
    if rows:
        (run / "ckpt.pth").write_bytes(b"x")
    if acc is not None:
        results = {"method": method, "dataset": dataset, "network": network, "seed": seed, "epochs": epochs,
                   "best_test_acc": acc, "final_test_acc": acc - 1.0}  # fmt: skip
        if val_acc is not None:
            results["val_selected_test_acc"] = val_acc
        (run / "results.json").write_text(json.dumps(results))
    return run


def sweep_tree(root: Path) -> Path:
    """Several methods, datasets, seeds, a partial run, two settings in one cell, a fraction sweep."""
    for seed, acc in zip((1, 2, 3), (10.0, 20.0, 30.0)):
        fake_run(root, "ilm_vp", "flowers102", "resnet18", seed, acc, losses=True)
    fake_run(root, "flm_vp", "flowers102", "resnet18", 1, 12.0, losses=True)
    fake_run(root, "flm_vp", "flowers102", "resnet18", 2, 14.0)
    fake_run(root, "flm_vp", "flowers102", "resnet18", 3, None, done=2)  # interrupted
    fake_run(root, "ilm_vp", "dtd", "resnet18", 1, 40.0, val_acc=39.0)
    fake_run(root, "ilm_vp", "dtd", "resnet18", 2, 42.0, val_acc=41.5)  # seed 3 never ran
    for seed in (1, 2, 3):
        fake_run(root, "flm_vp", "dtd", "resnet18", seed, 50.0 + seed)
    fake_run(root, "ilm_vp", "svhn", "resnet18", 1, 90.0, epochs=10)
    fake_run(root, "ilm_vp", "svhn", "resnet18", 1, 50.0, epochs=5)
    fake_run(root, "ilm_vp", "svhn", "resnet18", 2, 52.0, epochs=5)
    for fraction in (0.25, 0.5):
        for seed in (1, 2):
            fake_run(root, "ilm_vp", "gtsrb", "resnet18", seed, 40.0 + 40 * fraction, train_fraction=fraction)
            fake_run(root, "flm_vp", "gtsrb", "resnet18", seed, 35.0 + 40 * fraction, train_fraction=fraction)
    return root
