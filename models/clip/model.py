"""Frozen CLIP from open_clip: name resolution, offline weights, on-device preprocessing, logits.

``load_clip("ViT-B/32")`` accepts OpenAI's spelling and open_clip's (``ViT-B-32``); any
open_clip model config works, with any of its pretrained tags (``--clip-pretrained``), a local
checkpoint (``--clip-weights``, open_clip or OpenAI format) or random weights
(``--clip-pretrained none``, seeded so every run gets the same network). Weights are looked up
in the project cache, then open_clip's caches; nothing is downloaded when ``VP_DOWNLOAD=0``.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import cfg
from common.choices import Choices
from common.errors import UserError
from models.layers import Normalize, full_precision

RANDOM_INIT_SEED = 0
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass
class LoadedCLIP:
    """A frozen open_clip model with the facts the prompts and text side need."""

    name: str  # open_clip spelling, e.g. ViT-B-32
    model: nn.Module
    tokenizer: object
    weights_id: str  # what the weights are: tag, file (+size/mtime) or random init; keys the text cache
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int


def clip_model_name(name: str) -> str:
    """``ViT-B/32`` -> ``ViT-B-32``; any open_clip model config name is accepted as is."""
    import open_clip

    canonical = name.replace("/", "-")
    if open_clip.get_model_config(canonical) is None:
        known = ", ".join(m for m in open_clip.list_models() if m.startswith(("ViT-B", "ViT-L", "RN50")))
        raise UserError(f"unknown CLIP model {name!r}; open_clip models include {known} (open_clip.list_models() lists all)")
    return canonical


def _is_clip_model(name: str) -> bool:
    try:
        clip_model_name(name)
    except UserError:
        return False
    return True


# ``--network`` of the CLIP methods: a few common models, and any open_clip model config
CLIP_NETWORKS = Choices(
    "CLIP model",
    lambda: {
        "ViT-B/32": "CLIP ViT-B/32, the model of Chen et al. (2023) and Bahng et al. (2022)",
        "ViT-B/16": "CLIP ViT-B/16",
        "ViT-L/14": "CLIP ViT-L/14",
        "RN50": "CLIP ResNet-50",
    },
    others="any open_clip model, in OpenAI (ViT-B/32) or open_clip (ViT-B-32) spelling (open_clip.list_models() lists them); "
    "weights from --clip-pretrained",
    accepts=_is_clip_model,
)


def project_weights_path(name: str, tag: str, suffix: str = ".safetensors") -> Path:
    """Where a weights file may be placed by hand: ``$VP_CACHE/clip/<model>_<tag><suffix>``."""
    return cfg.CACHE_PATH / "clip" / f"{name}_{tag}{suffix}"


def _source_of(pretrained_cfg: dict) -> tuple[str, str]:
    """(file name, URL) that open_clip would download for a tag."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME

    hub = pretrained_cfg.get("hf_hub", "")
    if hub:
        repo, filename = os.path.split(hub)
        filename = filename or HF_SAFE_WEIGHTS_NAME
        return filename, f"https://huggingface.co/{repo}/resolve/main/{filename}"
    url = pretrained_cfg.get("url", "")
    return os.path.basename(url), url


def _cached_weights(name: str, tag: str, pretrained_cfg: dict) -> Path | None:
    """A weights file already on disk: the project cache, the Hugging Face cache, ``~/.cache/clip``."""
    for suffix in WEIGHT_SUFFIXES:
        if project_weights_path(name, tag, suffix).is_file():
            return project_weights_path(name, tag, suffix)
    hub = pretrained_cfg.get("hf_hub", "")
    if hub:
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            try_to_load_from_cache = None
        repo, filename = os.path.split(hub)
        if try_to_load_from_cache is not None:
            for candidate in [filename] if filename else [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]:
                found = try_to_load_from_cache(repo, candidate)
                if isinstance(found, str) and os.path.isfile(found):
                    return Path(found)
    url = pretrained_cfg.get("url", "")
    if url:
        path = Path("~/.cache/clip").expanduser() / os.path.basename(url)
        if path.is_file():
            return path
    return None


def resolve_weights(name: str, pretrained: str | None, weights: str | None, download: bool) -> tuple[Path | None, str, dict]:
    """(checkpoint path or None for random init, weights identity, the tag's open_clip config)."""
    import open_clip

    tag_cfg: dict = {}
    if pretrained and pretrained.lower() != "none":
        tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)
        if not tag_cfg:
            tags = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
            raise UserError(f"unknown pretrained tag {pretrained!r} for CLIP {name}; available: {tags}, or 'none' for random weights")
    if weights:
        path = Path(weights).expanduser().resolve()
        if not path.is_file():
            raise UserError(f"CLIP weights file not found: {path}")
        stat = path.stat()
        return path, f"file:{path}:{stat.st_size}:{stat.st_mtime_ns}", tag_cfg
    if not tag_cfg:
        return None, f"random-init-seed{RANDOM_INIT_SEED}", tag_cfg
    found = _cached_weights(name, pretrained, tag_cfg)
    if found is not None:
        return found, f"tag:{pretrained}", tag_cfg
    filename, url = _source_of(tag_cfg)
    place = project_weights_path(name, pretrained, Path(filename).suffix or ".safetensors")
    how = f"place {filename} from {url} at {place}, or pass --clip-weights PATH (--clip-pretrained none: random weights)"
    if not download:
        raise UserError(f"CLIP weights for {name} ({pretrained}) not found offline: {how}")
    try:
        return Path(open_clip.download_pretrained(tag_cfg)), f"tag:{pretrained}", tag_cfg
    except Exception as exc:
        raise UserError(f"CLIP weights for {name} ({pretrained}) could not be downloaded ({type(exc).__name__}); {how}") from exc


def find_weights(name: str, pretrained: str | None = "openai", weights: str | None = None, download: bool | None = None) -> None:
    """Make sure :func:`load_clip`'s weights file is on disk (found, or downloaded where allowed), building nothing."""
    resolve_weights(clip_model_name(name), pretrained, weights, cfg.DOWNLOAD if download is None else download)


def load_clip(name: str = "ViT-B/32", pretrained: str | None = "openai", weights: str | None = None, download: bool | None = None) -> LoadedCLIP:
    """Build a frozen, eval-mode CLIP on the CPU with its weights and preprocessing constants."""
    import open_clip

    download = cfg.DOWNLOAD if download is None else download
    canonical = clip_model_name(name)
    path, weights_id, tag_cfg = resolve_weights(canonical, pretrained, weights, download)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)  # random init is the same network in every run
        model = open_clip.create_model(canonical, pretrained=None, force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)))
    if path is not None:
        try:
            open_clip.load_checkpoint(model, str(path))
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"cannot load CLIP weights {path} into {canonical}: {first}") from exc
    model.requires_grad_(False).eval()
    preprocess = {**open_clip.get_model_preprocess_cfg(model), **{k: v for k, v in tag_cfg.items() if k in ("mean", "std")}}
    size = preprocess.get("size", model.visual.image_size)
    size = size[0] if isinstance(size, (tuple, list)) else size
    return LoadedCLIP(
        name=canonical,
        model=model,
        tokenizer=open_clip.get_tokenizer(canonical),
        weights_id=weights_id,
        mean=tuple(preprocess.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        std=tuple(preprocess.get("std", open_clip.OPENAI_DATASET_STD)),
        image_size=int(size),
    )


def clip_input_size(name: str) -> int:
    """The square input size of an open_clip model, read from its config (no weights are loaded)."""
    import open_clip

    size = open_clip.get_model_config(clip_model_name(name))["vision_cfg"]["image_size"]
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def shortest_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """``(H, W)`` with the shorter side ``size`` and the aspect ratio kept, rounded as torchvision's
    ``Resize(size)`` rounds (the longer side truncated)."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def pil_bicubic_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a batch of 8-bit images scaled to ``[0, 1]`` as PIL's bicubic resize does.

    PIL resizes an 8-bit image in two passes, width first, rounding to whole grey levels after
    each; ``antialias=True`` is PyTorch's implementation of PIL's kernel. With the same rounding
    between the passes the result matches PIL's to within one grey level (on a few pixels).
    """
    y = x * 255.0
    if y.shape[-1] != size[1]:
        y = F.interpolate(y, size=(y.shape[-2], size[1]), mode="bicubic", align_corners=False, antialias=True).round_().clamp_(0, 255)
    if y.shape[-2] != size[0]:
        y = F.interpolate(y, size=tuple(size), mode="bicubic", align_corners=False, antialias=True).round_().clamp_(0, 255)
    return y / 255.0


class CLIPPreprocess(nn.Module):
    """CLIP's test transform on a float batch in ``[0, 1]``, on its device.

    The transform of open_clip (``Resize(size, bicubic)`` + ``CenterCrop(size)`` + normalization)
    with the same output sizes and crop offsets. Images already ``size`` x ``size`` (decoded so by
    ``--decode crop``, with PIL exactly as open_clip does) are only normalized; others, such as
    CIFAR's 32x32, are resized here as PIL resizes (:func:`pil_bicubic_resize`). Grey images are
    repeated to three channels. ``normalized=False`` stops before the normalization: a prompt
    (:mod:`models.prompts`) takes the image in ``[0, 1]`` and normalizes it itself.
    """

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float], normalized: bool = True) -> None:
        super().__init__()
        self.size = size
        self.normalize = Normalize(mean, std) if normalized else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h, w = x.shape[-2:]
        if min(h, w) != self.size:
            h, w = shortest_side_size(h, w, self.size)
            x = pil_bicubic_resize(x, (h, w))
        top, left = int(round((h - self.size) / 2.0)), int(round((w - self.size) / 2.0))  # torchvision's CenterCrop
        x = x[..., top : top + self.size, left : left + self.size]
        return self.normalize(x)


class CLIPClassifier(nn.Module):
    """Frozen image encoder scored against fixed text embeddings.

    ``logits = logit_scale.exp() * normalize(image_features) @ text_embeddings.T``, computed in
    float32 even when the encoder runs under autocast; the text
    embeddings (one per label, L2-normalized) are a non-persistent buffer, so checkpoints do not
    carry them and they are never re-encoded.
    """

    def __init__(self, visual: nn.Module, logit_scale: torch.Tensor, text_embeddings: torch.Tensor) -> None:
        super().__init__()
        self.visual = visual
        self.register_buffer("scale", logit_scale.detach().float().exp().reshape(()).clone(), persistent=False)
        self.register_buffer("text", F.normalize(text_embeddings.detach().float(), dim=-1), persistent=False)

    @property
    def num_labels(self) -> int:
        return int(self.text.shape[0])

    def image_features(self, x: torch.Tensor) -> torch.Tensor:
        features = self.visual(x)
        with full_precision(features):
            return F.normalize(features.float(), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.image_features(x)
        # float32 even under autocast: bf16 logits near 25-30 fall on steps of 0.125, tying labels
        with full_precision(features):
            return self.scale * features @ self.text.t()
