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


def test_logits_are_float32_under_autocast_and_free_of_rounding_ties():
    """Labels whose logits (about 27) differ by 0.02: bf16 logits would round them to one value
    (steps of 0.125) and argmax would take the lowest index; these stay float32 and apart."""
    features = torch.tensor([[1.0, 0.0]])
    angles = torch.tensor([0.30, 0.2995, 0.2990])  # cosines 0.955, 0.9552, 0.9555: the last is largest
    text = torch.stack([angles.cos(), angles.sin()], dim=1)
    classifier = CLIPClassifier(torch.nn.Identity(), torch.tensor(28.3).log(), text)
    plain = classifier(features)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = classifier(features)
        rounded = (28.3 * features @ text.t())  # the same product left to autocast
    assert mixed.dtype == torch.float32 and torch.equal(mixed, plain) and int(mixed.argmax()) == 2
    assert rounded.dtype == torch.bfloat16 and int(rounded.argmax()) == 0  # the tie the float32 logits avoid


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
    grey = torch.full((2, 3, 32, 32), 153 / 255)  # an 8-bit grey level (0.6)
    out = pre(grey)
    assert out.shape == (2, 3, 224, 224)
    for channel, value in enumerate((0.2, 1.4, 0.6)):  # (0.6 - mean) / std
        assert torch.allclose(out[:, channel], torch.full((1,), value), atol=1e-5)
    # a wide image: the shorter side becomes 224 and the centre columns are kept
    wide = torch.zeros(1, 3, 224, 448)
    wide[..., 112:336] = 1.0
    assert torch.allclose(pre(wide)[:, 2], torch.ones(1), atol=1e-5)
    assert pre(torch.rand(1, 1, 50, 50)).shape == (1, 3, 224, 224)


def open_clip_reference(path, size: int, mean, std) -> torch.Tensor:
    """What open_clip's own test transform makes of the stored file (``resize_mode`` shortest)."""
    import open_clip
    from PIL import Image

    with Image.open(path) as img:
        return open_clip.image_transform(size, is_train=False, mean=mean, std=std)(img.convert("RGB"))


@pytest.mark.parametrize("height,width", [(37, 50), (300, 211), (96, 96), (224, 225)])
def test_crop_decoding_then_preprocess_equals_open_clips_transform(tmp_path, height, width):
    """A non-square stored image: decoded with --decode crop at 224 and normalized on the device,
    it is open_clip's preprocess output (the ILM-VP CLIP scripts' input) to float rounding."""
    import numpy as np
    from PIL import Image

    from data.image_io import read_image

    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    rng = np.random.default_rng(height)
    path = tmp_path / "image.png"
    Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)).save(path)
    decoded = torch.from_numpy(read_image(path, (224, 224), "crop").transpose(2, 0, 1).copy())
    ours = CLIPPreprocess(224, mean, std)(decoded[None].float() / 255)[0]
    assert torch.allclose(ours, open_clip_reference(path, 224, mean, std), atol=1e-5)


def test_crop_decoding_equals_the_tiny_models_own_preprocess(tmp_path):
    """The same against the transform open_clip builds for a model (create_model_and_transforms)."""
    import numpy as np
    import open_clip
    from PIL import Image

    from data.image_io import read_image

    _, _, preprocess = open_clip.create_model_and_transforms(register_tiny_clip(), pretrained=None)
    clip = load_clip(register_tiny_clip(), "none")
    path = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, size=(40, 71, 3), dtype=np.uint8)).save(path)
    decoded = torch.from_numpy(read_image(path, (clip.image_size, clip.image_size), "crop").transpose(2, 0, 1).copy())
    ours = CLIPPreprocess(clip.image_size, clip.mean, clip.std)(decoded[None].float() / 255)[0]
    with Image.open(path) as img:
        assert torch.allclose(ours, preprocess(img.convert("RGB")), atol=1e-5)


@pytest.mark.parametrize("height,width", [(32, 32), (40, 29)])
def test_on_device_resize_of_small_images_matches_pil_within_a_grey_level(tmp_path, height, width):
    """Images smaller than CLIP's input (CIFAR's 32x32) are resized on the device as PIL does:
    at most 2 grey levels apart on a few pixels (PIL rounds its integer arithmetic differently)."""
    import numpy as np
    from PIL import Image

    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    array = np.random.default_rng(width).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    path = tmp_path / "small.png"
    Image.fromarray(array).save(path)
    ours = CLIPPreprocess(224, mean, std)(torch.from_numpy(array.transpose(2, 0, 1).copy())[None].float() / 255)[0]
    levels = ((ours - open_clip_reference(path, 224, mean, std)) * 0.25 * 255).abs()
    assert float(levels.max()) <= 2.0 + 1e-3 and float((levels > 0.5).float().mean()) < 0.01
