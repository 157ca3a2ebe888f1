"""Visual prompting of a frozen CNN: train the prompt, map the labels (ILM-VP, FLM-VP, RLM-VP, BLM-VP, BLM+-VP).

The methods differ only in their default ``--mapping``; ``--prompt`` picks the input transform.
"""
from __future__ import annotations

import argparse

from algorithms.engine import Experiment
from algorithms.mappings import build_mapping
from algorithms.methods.registry import MethodSpec, register_family, register_method
from algorithms.runtime import Runtime
from algorithms.settings import RunConfig
from common.argtypes import positive_float
from common.errors import UserError
from data.augment import build_augment
from data.registry import TargetData
from models.networks import load_network
from models.prompts import PROMPT_CHOICES, PROMPTS
from models.reprogrammer import ReprogrammingModel


def build_visual_prompt(config: RunConfig, data: TargetData, runtime: Runtime) -> Experiment:
    net = load_network(config.network, config.weights)
    prompt = PROMPTS[PROMPT_CHOICES.resolve(config.prompt)](
        data.image_size, net.mean, net.std, out_size=net.input_size, init=config.prompt_init, image_mask=data.prompt_mask
    )
    mapping = build_mapping(
        config.mapping, net.num_classes, data.num_classes, interval=config.mapping_interval, seed=config.seed
    )
    model = ReprogrammingModel(prompt, net.model, mapping, channels_last=config.channels_last, fold_batch_norm=config.fold_bn,
                               fast_frozen_ops=config.fast_frozen_ops, recompute=config.recompute)  # fmt: skip
    augment = config.extra.get("augment")
    augment = config.prompt == "watermark" if augment is None else augment  # the BLM recipe augments watermark runs
    # BLM's watermark views: Resize(out + 4) + RandomCrop(out); the padding prompt: the CIFAR recipe
    recipe = "resize_crop" if config.prompt == "watermark" else "pad_crop_flip"
    mapping_params = [p for p in mapping.parameters() if p.requires_grad]
    groups = None
    if mapping_params:  # a trainable mapping (linear) learns at --mapping-lr
        mapping_lr = config.lr if config.extra.get("mapping_lr") is None else config.extra["mapping_lr"]
        if mapping_lr <= 0:
            raise UserError(f"--mapping-lr must be positive, got {mapping_lr}")
        groups = [{"params": list(prompt.parameters())}, {"params": mapping_params, "lr": mapping_lr}]
    return Experiment(
        model=model,
        source_names=net.class_names,
        train_augment=build_augment(recipe, data.image_size, net.input_size) if augment else None,
        param_groups=groups,
        info={"augment": augment, "augment_recipe": recipe if augment else "none"},
    )


def add_visual_prompt_arguments(group) -> None:
    group.add_argument("--mapping-lr", type=positive_float, default=None, metavar="LR",
                       help="learning rate of a trainable mapping (--mapping linear) (default: --lr)")  # fmt: skip
    group.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                       help="augment training images: with --prompt pad a random crop (zero padding 4 per 32 px) + horizontal flip; with "
                            "watermark BLM's resize to 228 + random 224 crop (resize_crop) (default: on for watermark, off for pad)")  # fmt: skip


def check_visual_prompt(config: RunConfig) -> None:
    mapping_lr = config.extra.get("mapping_lr")
    if mapping_lr is not None and mapping_lr <= 0:
        raise UserError(f"--mapping-lr must be positive, got {mapping_lr}")


# The ILM-VP code trains the prompt under fp16 autocast with a gradient scaler.
register_family(
    "visual_prompt", build_visual_prompt, add_visual_prompt_arguments, prompts=PROMPT_CHOICES, check=check_visual_prompt, cuda_precision="fp16"
)

_VP_DEFAULTS = {"epochs": 200, "lr": 0.01, "optimizer": "adam", "scheduler": "multistep", "milestones": [0.5, 0.72]}
register_method(MethodSpec(
    "ilm_vp",
    "visual_prompt",
    "ILM-VP: visual prompt with the label mapping refit every epoch (Chen et al., CVPR 2023).",
    {**_VP_DEFAULTS, "mapping": "ilm"},
))
register_method(MethodSpec(
    "flm_vp",
    "visual_prompt",
    "FLM-VP: visual prompt with the frequency label mapping computed once, before training.",
    {**_VP_DEFAULTS, "mapping": "flm"},
))
register_method(MethodSpec(
    "rlm_vp",
    "visual_prompt",
    "RLM-VP: visual prompt with a seeded random one-to-one label mapping.",
    {**_VP_DEFAULTS, "mapping": "rlm"},
))
register_method(MethodSpec(
    "blm_vp",
    "visual_prompt",
    "BLM-VP: visual prompt with the Bayesian-guided probabilistic label mapping refit every epoch (Cai et al., NeurIPS 2024).",
    {**_VP_DEFAULTS, "mapping": "blm"},
))
register_method(MethodSpec(
    "blmplus_vp",
    "visual_prompt",
    "BLM+-VP: BLM with each sample's top-k softmax probabilities instead of its top-1 vote (Cai et al., NeurIPS 2024).",
    {**_VP_DEFAULTS, "mapping": "blmplus"},
))
