"""A tiny randomly initialised open_clip model, registered under :data:`TINY_CLIP` for the CLIP tests."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import open_clip
import pytest

import cfg

TINY_CLIP = "vp-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def register_tiny_clip() -> str:
    """Register the tiny config once per process (open_clip reads configs from JSON files)."""
    if open_clip.get_model_config(TINY_CLIP) is None:
        folder = Path(tempfile.mkdtemp(prefix="vp-tiny-clip-"))
        (folder / f"{TINY_CLIP}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
        open_clip.add_model_config(folder / f"{TINY_CLIP}.json")
    return TINY_CLIP


def tiny_clip_args(results: Path, data: Path, *extra: str, prompt_size: int | None = 4) -> list[str]:
    """Flags for a seconds-long CLIP run on the tiny model and tiny CIFAR pickles; ``prompt_size``
    None for a prompt that has no ``--prompt-size`` (giving it one is an error)."""
    size = [] if prompt_size is None else ["--prompt-size", str(prompt_size)]
    return [
        "--network", register_tiny_clip(), "--clip-pretrained", "none", "--dataset", "cifar10",
        "--data-path", str(data), "--results-path", str(results), "--epochs", "2", "--batch-size", "16",
        "--device", "cpu", *size, *extra,
    ]  # fmt: skip


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """Text embeddings and decoded images cached in the test's own folder (import it with autouse)."""
    monkeypatch.setattr(cfg, "CACHE_PATH", tmp_path / "cache")


def run_dir_of(results: Path, method: str) -> Path:
    """The one run folder of ``method`` below ``results``."""
    (path,) = [p.parent for p in (results / method).rglob("config.json")]
    return path
