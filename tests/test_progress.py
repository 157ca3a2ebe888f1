"""The steps longer than a few seconds show a progress bar: text encoding, zero-shot, feature caching."""
from __future__ import annotations

import pytest
from clip_helpers import tiny_clip_args
from conftest import tiny_args
from tqdm import tqdm as real_tqdm

import algorithms.engine.evaluation
import algorithms.engine.loop
import algorithms.methods.clip_prompting
import cfg
import models.clip.text
from runner.cli import main


@pytest.fixture
def bars(monkeypatch):
    """Every progress bar the run opens, as (description, total), in order."""
    opened = []

    class recording_tqdm(real_tqdm):
        def __init__(self, iterable=None, *args, desc=None, total=None, **kwargs):
            opened.append((desc, len(iterable) if total is None and hasattr(iterable, "__len__") else total))
            super().__init__(iterable, *args, desc=desc, total=total, **kwargs)

    for module in (models.clip.text, algorithms.methods.clip_prompting, algorithms.engine.loop, algorithms.engine.evaluation):
        monkeypatch.setattr(module, "tqdm", recording_tqdm)
    return opened


def test_clip_run_shows_text_encoding_and_zero_shot(tmp_path, cifar_root, bars, monkeypatch):
    monkeypatch.setattr(cfg, "CACHE_PATH", tmp_path / "cache")  # no text embeddings cached by other tests
    assert main("ilm_tp_vp", tiny_clip_args(tmp_path, cifar_root, "--epochs", "1")) == 0
    described = dict(bars)
    assert described["encode text prompts"] == 81 * 10  # every template x class text
    assert described["zero-shot test"] == 1  # 20 test images, one evaluation batch of 32
    assert [d for d, _ in bars].index("zero-shot test") < [d for d, _ in bars].index("epoch 1 train")


def test_linear_probing_shows_the_feature_cache(tmp_path, cifar_root, bars):
    assert main("linear_probing", tiny_args(tmp_path, cifar_root, "--epochs", "1")) == 0
    described = dict(bars)
    assert described["feature cache (train)"] == 2 and described["feature cache (test)"] == 1  # 50 / 20 images, batches of 32
