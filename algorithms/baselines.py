"""Linear probing and full fine-tuning: the paper's Table 1 baselines, as two model families.

Both replace the network's final linear layer with a new K-way one and feed it the image resized
to the network's input size and normalized (:class:`~models.transforms.ResizeNormalize`); the
label mapping is the identity. They differ only in what trains: linear probing trains the head
on a frozen network kept in eval mode, fine-tuning trains every weight. The training
augmentation (``--train-augment``) applies to training batches only; evaluation is deterministic.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from algorithms.config import RunConfig
from algorithms.engine import Experiment
from algorithms.errors import UserError
from algorithms.label_mapping import IdentityMapping
from algorithms.methods import MethodSpec, register_family, register_method
from algorithms.runtime import Runtime
from data.registry import TargetData
from models.networks import final_linear_layer, load_network, replace_module
from models.reprogrammer import ReprogrammingModel
from models.transforms import AUGMENTATIONS, ResizeNormalize


def new_head(in_features: int, num_classes: int, seed: int) -> nn.Linear:
    """A K-way linear layer with ``nn.Linear``'s default init, drawn from ``seed`` alone."""
    head = nn.Linear(in_features, num_classes)
    generator = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(in_features)
    with torch.no_grad():
        head.weight.uniform_(-bound, bound, generator=generator)
        head.bias.uniform_(-bound, bound, generator=generator)
    return head


def add_baseline_arguments(group) -> None:
    group.add_argument("--train-augment", choices=sorted(AUGMENTATIONS), default="none",
                       help="training-batch augmentation: crop_flip = random resized crop + horizontal flip")  # fmt: skip


def _build(config: RunConfig, data: TargetData, train_network: bool) -> Experiment:
    if config.mapping != "identity":
        raise UserError(f"{config.method} trains a new {data.num_classes}-way head; --mapping does not apply (got {config.mapping!r})")
    augment_name = config.extra.get("train_augment", "none")
    if augment_name not in AUGMENTATIONS:
        raise UserError(f"unknown --train-augment {augment_name!r}; choose from {', '.join(sorted(AUGMENTATIONS))}")
    net = load_network(config.network, config.weights)
    head_name, old_head = final_linear_layer(net.model)
    replace_module(net.model, head_name, new_head(old_head.in_features, data.num_classes, config.seed))
    net.model.requires_grad_(train_network)
    net.model.get_submodule(head_name).requires_grad_(True)
    model = ReprogrammingModel(
        ResizeNormalize(net.input_size, net.mean, net.std),
        net.model,
        IdentityMapping(data.num_classes),
        train_network=train_network,
        channels_last=config.channels_last,
        fold_batch_norm=config.fold_bn,  # only the frozen network of linear probing is folded
    )
    augment_cls = AUGMENTATIONS[augment_name]
    return Experiment(
        model=model,
        source_names=list(data.class_names),
        train_augment=augment_cls() if augment_cls is not None else None,
        info={"head": head_name, "input_size": net.input_size},
    )


def build_linear_probe(config: RunConfig, data: TargetData, runtime: Runtime) -> Experiment:
    return _build(config, data, train_network=False)


def build_full_finetune(config: RunConfig, data: TargetData, runtime: Runtime) -> Experiment:
    return _build(config, data, train_network=True)


register_family("linear_probe", build_linear_probe, add_baseline_arguments)
register_family("full_finetune", build_full_finetune, add_baseline_arguments)

register_method(MethodSpec("linear_probing", "linear_probe", "Linear probing: a new K-way head on the frozen network (Chen et al., CVPR 2023, Table 1).",
                           {"epochs": 200, "lr": 0.1, "optimizer": "adam", "weight_decay": 0.0, "scheduler": "multistep",
                            "milestones": [0.5, 0.72], "mapping": "identity", "train_augment": "none"}))  # fmt: skip
register_method(MethodSpec("full_finetune", "full_finetune", "Full fine-tuning: every weight trains, new K-way head (Chen et al., CVPR 2023, Table 1).",
                           {"epochs": 200, "lr": 1e-4, "optimizer": "adam", "weight_decay": 5e-4, "scheduler": "cosine",
                            "mapping": "identity", "train_augment": "crop_flip"}))  # fmt: skip
