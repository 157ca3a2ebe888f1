"""CLIP text embeddings of every template x class name, computed once and cached on disk.

The cache file is keyed by the model, its weights, the templates and the class names, so a run
with the same text side reads the embeddings back instead of running the text encoder; no
embedding is ever computed per batch.
"""
from __future__ import annotations

import hashlib
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

import cfg
from common import preemption
from common import progress as display
from common.files import atomic_write_bytes
from models.clip.model import LoadedCLIP
from models.clip.templates import fill

TEXT_BATCH = 256


def clip_class_name(name: str) -> str:
    """A class name as the official ILM-VP and Bahng et al. code put it in a text prompt: lower
    case, ``_`` and ``-`` read as spaces (``Mercedes-Benz`` -> ``mercedes benz``; the hyphen is a
    token of its own for CLIP's tokenizer, case is not)."""
    return name.lower().replace("_", " ").replace("-", " ")


@torch.no_grad()
def encode_texts(clip: LoadedCLIP, texts: Sequence[str], device: torch.device, progress: bool = True) -> torch.Tensor:
    """L2-normalized text features ``[len(texts), D]`` (float32, on the CPU), with a progress bar
    on a terminal (81 templates x K classes take most of a CPU run's first minute)."""
    model = clip.model.to(device)
    out = []
    with display.bar(total=len(texts), desc="encode text prompts", unit="text", enabled=progress) as bar:
        for start in preemption.stoppable(range(0, len(texts), TEXT_BATCH), "during the text encoding"):  # each rank encodes alone
            batch = list(texts[start : start + TEXT_BATCH])
            tokens = clip.tokenizer(batch).to(device)
            out.append(F.normalize(model.encode_text(tokens).float(), dim=-1).cpu())
            bar.update(len(batch))
    clip.model.to("cpu")
    return torch.cat(out)


def cache_key(clip: LoadedCLIP, templates: Sequence[str], class_names: Sequence[str]) -> dict:
    from importlib import metadata

    return {
        "model": clip.name,
        "weights": clip.weights_id,
        "open_clip": metadata.version("open_clip_torch"),
        "templates": list(templates),
        "class_names": list(class_names),
    }


def cache_file(key: dict, cache_dir: Path) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir / f"{key['model']}-{digest}.pt"


def text_embeddings(
    clip: LoadedCLIP,
    templates: Sequence[str],
    class_names: Sequence[str],
    device: torch.device | str = "cpu",
    cache_dir: Path | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Embeddings ``[T, K, D]`` of ``template t`` filled with ``class k``, L2-normalized.

    Read from ``cache_dir`` (default ``$VP_CACHE/clip_text``) when this exact text side was
    encoded before; otherwise encoded once and written there atomically.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else cfg.CACHE_PATH / "clip_text"
    key = cache_key(clip, templates, class_names)
    path = cache_file(key, cache_dir)
    if path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved.get("key") == key:
                return saved["embeddings"]
        except Exception:
            pass  # damaged cache entry: encode again and replace it
    texts = [fill(t, c) for t in templates for c in class_names]
    flat = encode_texts(clip, texts, torch.device(device), progress)
    embeddings = flat.view(len(templates), len(class_names), -1)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save({"key": key, "embeddings": embeddings}, buffer)
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as exc:
        print(f"warning: text embeddings not cached ({cache_dir}: {exc.strerror or exc})", file=sys.stderr)
    return embeddings
