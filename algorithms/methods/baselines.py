"""Linear probing and full fine-tuning: the paper's Table 1 baselines, as two model families.

Both replace the network's final linear layer with a new K-way one and feed it the image resized
to the network's input size and normalized (:class:`~models.transforms.ResizeNormalize`); the
label mapping is the identity. They differ only in what trains: linear probing trains the head
on a frozen network kept in eval mode, fine-tuning trains every weight. The training
augmentation (``--augment``, the prompts' vocabulary) applies to training batches only; evaluation is deterministic.

Without augmentation the frozen network's features are a function of the image alone, so linear
probing computes them once (``--cache-features``, the default there) and trains the head on them:
one forward pass over the data instead of one per epoch, with the same batches and the same result.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch
from torch import nn

from algorithms.engine import Experiment, Precompute, Precomputed, precompute_inputs
from algorithms.mappings import IdentityMapping
from algorithms.mappings.head import LINEAR_PROBING_RECIPE, new_head
from algorithms.methods.registry import MethodSpec, register_family, register_method
from algorithms.runtime import Runtime
from algorithms.settings import RunConfig
from common.errors import UserError
from common.options import ALWAYS, Options, option
from data.augment_recipes import NONE, build_recipe, recipe_help, resolve_recipe
from data.registry import TargetData
from models.layers import ResizeNormalize
from models.networks import SubmoduleAt, final_linear_layer, load_network, replace_module
from models.reprogrammer import ReprogrammingModel

# what the baselines' --train-augment values meant before the recipes had their own names
LEGACY_AUGMENT = {"crop_flip": "random_resized_crop_flip", "trivialaugment": "trivialaugment_wide"}


@dataclass(frozen=True)
class BaselineOptions(Options):
    """Linear probing's and fine-tuning's flags."""

    RECORDED = ALWAYS
    train_augment: str = option(NONE, lambda: recipe_help("training-batch augmentation", "earlier spellings: crop_flip = random_resized_crop_flip; trivialaugment = trivialaugment_wide"),
                                flag="--augment", metavar="RECIPE")  # fmt: skip  (help built when shown: every registered recipe)
    cache_features: bool | None = option(None, "linear probing: compute the frozen network's features once and train the head on them, with the same result",
                                         default_help="on unless --augment is set", action=argparse.BooleanOptionalAction)  # fmt: skip

def add_baseline_arguments(group) -> None:
    """The former spelling of --augment, still accepted; not in --help."""
    group.add_argument("--train-augment", dest="train_augment", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def check_baseline(config: RunConfig, train_network: bool) -> None:
    """The flag combinations these methods refuse, before any data or network loads."""
    if config.mapping != "identity":
        raise UserError(f"{config.method} trains a new head with one output per target class; --mapping does not apply (got {config.mapping!r})")
    use_feature_cache(config, train_network, baseline_augment(config))


def baseline_augment(config: RunConfig) -> str:
    """``--augment`` (stored as ``train_augment``, its former flag) as a canonical recipe."""
    return resolve_recipe(config.options(BaselineOptions).train_augment, LEGACY_AUGMENT)


def use_feature_cache(config: RunConfig, train_network: bool, augment_name: str) -> bool:
    """``--cache-features`` resolved: on by default where it is exact (frozen network, no augmentation)."""
    requested = config.options(BaselineOptions).cache_features
    if requested and train_network:
        raise UserError(f"{config.method} trains the whole network; --cache-features applies to linear probing only")
    if requested and augment_name != "none":
        raise UserError(f"--cache-features needs --augment none: with {augment_name} the features change every epoch")
    # evaluating a checkpoint is one pass over the data: caching would only add the training set
    return requested is not False and not train_network and augment_name == "none" and not config.eval_only


def head_input(model: ReprogrammingModel, head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What ``head`` receives when the model sees images ``x``; fails unless its output is the network's."""
    seen: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _module, args: seen.append(args[0]))
    try:
        logits = model.source_logits(x)
    finally:
        handle.remove()
    if len(seen) != 1 or not torch.allclose(head(seen[0]).float(), logits.float(), rtol=1e-3, atol=1e-3):
        raise UserError(
            "the network's output is not its final linear layer's output, so its features cannot be cached; use --no-cache-features"
        )
    return seen[0]


def cached_features(model: ReprogrammingModel, head_name: str, resident: bool | None) -> Precompute:
    """Linear probing's precompute step: every image's head input, once; the head then trains on those.

    The head-only model shares the head with ``model`` under the same state-dict names, so
    checkpoints keep their keys and evaluate with or without the cache.
    """
    head = model.network.get_submodule(head_name)

    def precompute(data: TargetData, runtime: Runtime, batch_size: int) -> Precomputed:
        model.to(runtime.device).eval()
        runtime.synchronize()
        start = time.perf_counter()
        features = precompute_inputs(lambda x: head_input(model, head, x), data, runtime, batch_size, resident, desc="feature cache")
        runtime.synchronize()
        seconds = time.perf_counter() - start
        dim = features.train.inputs.shape[1]
        if runtime.is_main:
            print(f"feature cache: {sum(data.sizes().values())} images -> {dim}-d features of the frozen network in {seconds:.1f}s;"
                  " the head trains on them (--no-cache-features recomputes them every epoch)", flush=True)  # fmt: skip
        head_model = ReprogrammingModel(nn.Identity(), SubmoduleAt(head_name, head), model.label_mapping, channels_last=False)
        return Precomputed(head_model, features, {"feature_seconds": seconds, "feature_dim": dim})

    return precompute


def _build(config: RunConfig, data: TargetData, train_network: bool) -> Experiment:
    if config.mapping != "identity":
        raise UserError(f"{config.method} trains a new {data.num_classes}-way head; --mapping does not apply (got {config.mapping!r})")
    if config.recompute and train_network:
        raise UserError(f"--recompute is for frozen networks; {config.method} trains its network (its batch norms would update twice)")
    augment_name = baseline_augment(config)
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
        fast_frozen_ops=config.fast_frozen_ops,
        recompute=config.recompute,
    )
    cache = use_feature_cache(config, train_network, augment_name)
    return Experiment(
        model=model,
        source_names=list(data.class_names),
        train_augment=build_recipe(augment_name, data.image_size, net.input_size),
        info={"augment": augment_name, "head": head_name, "input_size": net.input_size, "feature_cache": cache},
        precompute=cached_features(model, head_name, config.resident_data) if cache else None,
    )


def build_linear_probe(config: RunConfig, data: TargetData, runtime: Runtime) -> Experiment:
    return _build(config, data, train_network=False)


def build_full_finetune(config: RunConfig, data: TargetData, runtime: Runtime) -> Experiment:
    return _build(config, data, train_network=True)


register_family(
    "linear_probe",
    build_linear_probe,
    add_baseline_arguments,
    options=(BaselineOptions,),
    check=lambda config: check_baseline(config, train_network=False),
    augment_recipe=baseline_augment,
)
# the trained network's batch norms normalise over the batch: --micro-batch changes what they see
register_family(
    "full_finetune",
    build_full_finetune,
    add_baseline_arguments,
    options=(BaselineOptions,),
    check=lambda config: check_baseline(config, train_network=True),
    batch_dependent=lambda config: True,
    augment_recipe=baseline_augment,
)

# the head and its recipe are --mapping head's too (algorithms.mappings.head), so a prompt + head starts as linear probing
register_method(MethodSpec("linear_probing", "linear_probe", "Linear probing: a new K-way head on the frozen network (Chen et al., CVPR 2023, Table 1).",
                           {"epochs": 200, **LINEAR_PROBING_RECIPE, "mapping": "identity", "train_augment": "none"}))  # fmt: skip
register_method(MethodSpec("full_finetune", "full_finetune", "Full fine-tuning: every weight trains, new K-way head (Chen et al., CVPR 2023, Table 1).",
                           {"epochs": 200, "lr": 1e-4, "optimizer": "adam", "weight_decay": 5e-4, "scheduler": "cosine",
                            "mapping": "identity", "train_augment": "random_resized_crop_flip"}))  # fmt: skip
