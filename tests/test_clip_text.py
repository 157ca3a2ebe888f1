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


def test_class_names_are_normalised_as_the_official_code_does():
    """Lower case, ``_`` and ``-`` as spaces (the official ILM-VP and Bahng et al. code)."""
    assert clip_text.clip_class_name("Mercedes-Benz S-Class Sedan 2012") == "mercedes benz s class sedan 2012"
    assert clip_text.clip_class_name("Rose_Red") == "rose red"
    assert clip_text.clip_class_name("bubbly") == "bubbly"
    assert clip_text.clip_class_name("Apply_Eye_Makeup") == "apply eye makeup"  # a UCF101 action
    assert clip_text.clip_class_name("20_speed") == "20 speed"  # GTSRB, the ILM-VP label map
    assert clip_text.clip_class_name("lifted_no_overtaking_general") == "lifted no overtaking general"
    assert clip_text.clip_class_name("black-eyed susan") == "black eyed susan"  # a Flowers102 name
    # the hyphen is a token of CLIP's tokenizer: normalised and raw names encode differently
    tokenizer = load_clip(register_tiny_clip(), "none").tokenizer
    assert not torch.equal(tokenizer(["Mercedes-Benz"]), tokenizer([clip_text.clip_class_name("Mercedes-Benz")]))
