"""models/clip/model.py: model names, offline weights, random init, logits, preprocessing."""
from __future__ import annotations

import pytest
import torch
from clip_helpers import register_tiny_clip

import cfg
from common.errors import UserError
from models.clip.model import CLIPClassifier, CLIPPreprocess, clip_model_name, load_clip, project_weights_path, resolve_weights


def test_model_names_accept_openai_spelling():
    assert clip_model_name("ViT-B/32") == "ViT-B-32" == clip_model_name("ViT-B-32")
    with pytest.raises(UserError, match="unknown CLIP model"):
        clip_model_name("ViT-Q/99")


def test_missing_weights_offline_names_the_file_and_place(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(cfg, "CACHE_PATH", tmp_path / "cache")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    with pytest.raises(UserError) as err:
        load_clip("ViT-B/32", "openai", download=False)
    place = project_weights_path("ViT-B-32", "openai")
    message = str(err.value)
    assert "ViT-B-32" in message and str(place) in message and "--clip-weights" in message
    assert "open_clip_model.safetensors" in message and "huggingface.co/timm/vit_base_patch32_clip_224.openai" in message
    # a file placed where the message says is picked up
    place.parent.mkdir(parents=True)
    place.write_bytes(b"")
    path, identity, _ = resolve_weights("ViT-B-32", "openai", None, download=False)
    assert path == place and identity == "tag:openai"
    # ... and a file that is not a CLIP checkpoint is a one-line error, as are a missing file and a bad tag
    with pytest.raises(UserError, match="cannot load CLIP weights"):
        load_clip(register_tiny_clip(), "none", weights=str(place))
    with pytest.raises(UserError, match="not found"):
        load_clip(register_tiny_clip(), "none", weights=str(tmp_path / "missing.pt"))
    with pytest.raises(UserError, match="unknown pretrained tag"):
        load_clip("ViT-B/32", "no-such-tag", download=False)


def test_random_init_is_the_same_network_every_time():
    a, b = load_clip(register_tiny_clip(), "none"), load_clip(register_tiny_clip(), "none")
    assert a.weights_id == "random-init-seed0"
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    assert not any(p.requires_grad for p in a.model.parameters()) and not a.model.training


def test_logits_are_scaled_cosine_similarities():
    text = torch.tensor([[3.0, 0.0], [1.0, 1.0], [0.0, -2.0]])
    classifier = CLIPClassifier(torch.nn.Identity(), torch.tensor(2.0).log(), text)
    features = torch.tensor([[1.0, 0.0], [0.0, 5.0]])
    r = 2**-0.5
    expected = 2.0 * torch.tensor([[1.0, r, 0.0], [0.0, r, -1.0]])
    assert torch.allclose(classifier(features), expected, atol=1e-6)
    assert classifier.num_labels == 3 and "text" not in classifier.state_dict()


def test_preprocess_upsamples_crops_and_normalizes():
    pre = CLIPPreprocess(224, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    grey = torch.full((2, 3, 32, 32), 0.5)
    out = pre(grey)
    assert out.shape == (2, 3, 224, 224)
    for channel, value in enumerate((0.0, 1.0, 0.5)):  # (0.5 - mean) / std
        assert torch.allclose(out[:, channel], torch.full((1,), value), atol=1e-5)
    # a wide image: the shorter side becomes 224 and the centre columns are kept
    wide = torch.zeros(1, 3, 224, 448)
    wide[..., 112:336] = 1.0
    assert torch.allclose(pre(wide)[:, 2], torch.ones(1), atol=1e-5)
    assert pre(torch.rand(1, 1, 50, 50)).shape == (1, 3, 224, 224)
