"""models/clip/templates.py and text.py: the 81 templates and the cached text embeddings."""
from __future__ import annotations

import torch
from clip_helpers import register_tiny_clip

import models.clip.text as clip_text
from models.clip.model import load_clip
from models.clip.templates import DEFAULT_TEMPLATE, TEMPLATES, fill


def test_81_distinct_templates_each_with_one_slot():
    assert len(TEMPLATES) == 81 and len(set(TEMPLATES)) == 81
    assert TEMPLATES[0] == DEFAULT_TEMPLATE == "This is a photo of a {}."
    assert all(t.count("{}") == 1 and t.count("{") == 1 and t.count("}") == 1 for t in TEMPLATES)
    assert fill("a photo of the {}.", "dog") == "a photo of the dog."


def test_text_embeddings_are_encoded_once_and_cached(tmp_path, monkeypatch):
    clip = load_clip(register_tiny_clip(), "none")
    calls = []
    encode = clip_text.encode_texts
    monkeypatch.setattr(clip_text, "encode_texts", lambda c, texts, device, *rest: calls.append(list(texts)) or encode(c, texts, device))
    templates, names = list(TEMPLATES[:3]), ["cat", "dog"]
    first = clip_text.text_embeddings(clip, templates, names, cache_dir=tmp_path)
    assert len(calls) == 1 and calls[0] == [fill(t, c) for t in templates for c in names]
    assert first.shape == (3, 2, 32)
    assert torch.allclose(first.norm(dim=-1), torch.ones(3, 2), atol=1e-5)
    # template-major layout: [t, k] is template t with class k
    single = encode(clip, [fill(templates[2], "dog")], torch.device("cpu"))[0]
    assert torch.allclose(first[2, 1], single, atol=1e-5)
    again = clip_text.text_embeddings(clip, templates, names, cache_dir=tmp_path)
    assert len(calls) == 1 and torch.equal(first, again)  # read back, not re-encoded
    clip_text.text_embeddings(clip, templates, ["cat", "bird"], cache_dir=tmp_path)
    assert len(calls) == 2  # other class names: another cache entry
    assert len(list(tmp_path.glob("*.pt"))) == 2
