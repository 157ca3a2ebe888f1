"""Visual prompting of a frozen CNN: train the prompt, map the labels (ILM-VP, FLM-VP, RLM-VP, BLM-VP, BLM+-VP, SMM, ACAVP).

The methods differ only in their default ``--mapping`` (SMM and ACAVP also in ``--prompt`` and ACAVP in its optimizer recipe);
``--prompt`` picks the input transform, ``--augment`` the training recipe.
"""
from __future__ import annotations

import argparse
from dataclasses import fields

from torch import nn

from algorithms.engine import Experiment
from algorithms.gradient_rules import normalise_and_clip
from algorithms.mappings import build_mapping, features_network, head_group, reads_features
from algorithms.mappings.head import add_head_arguments, check_head_options, complete_head_options
from algorithms.methods.registry import MethodSpec, register_family, register_method
from algorithms.runtime import Runtime
from algorithms.settings import RunConfig
from common.argtypes import positive_float, positive_int
from common.errors import UserError
from common.seeding import init_generator
from data.augment_recipes import CHAIN, NONE, build_recipe, recipe_help, recipe_resizes, resolve_recipe
from data.registry import TargetData
from models.networks import load_network
from models.prompts import OPTION_FLAGS, PROMPT_CHOICES, PROMPTS, PromptOptions, PromptSpec, prompts_reading
from models.reprogrammer import ReprogrammingModel


def prompt_options(config: RunConfig, prompt_cls: type[nn.Module]) -> PromptOptions:
    """The per-prompt flags given on the command line; one that ``--prompt`` does not read is an error."""
    given = {f.name: config.extra.get(f.name) for f in fields(PromptOptions) if config.extra.get(f.name) is not None}
    reads = getattr(prompt_cls, "OPTIONS", ())
    for name in given:
        if name not in reads:
            users = " or ".join(f"--prompt {p}" for p in prompts_reading(name)) or "no prompt"
            raise UserError(f"{OPTION_FLAGS[name]} applies to {users}, not --prompt {config.prompt}")
    return PromptOptions(**given)


# The spellings whose meaning follows the prompt (none; its paper's crop; TrivialAugment then it):
# the augmentation axis of tools/search.py, which applies one value to every prompt. Any recipe of
# data.augment_recipes is accepted by --augment as well.
AUGMENT_CHOICES = ("none", "crop_flip", "trivialaugment")


def prompt_legacy_augment(prompt_cls: type[nn.Module]) -> dict[str, str]:
    """``--augment``'s spellings of earlier versions for this prompt: ``crop_flip`` was its paper's
    crop-and-flip recipe (``CROP_FLIP``), ``trivialaugment`` TrivialAugment then that recipe."""
    crop = getattr(prompt_cls, "CROP_FLIP", None)
    return {"crop_flip": crop, "trivialaugment": f"trivialaugment_wide{CHAIN}{crop}"} if crop else {}


def resolve_augment(config: RunConfig, prompt_cls: type[nn.Module]) -> str:
    """``--augment`` as a canonical recipe (:mod:`data.augment_recipes`): the prompt's paper default
    when not given; True/False, the old on/off flag, mean ``crop_flip`` and ``none``.

    A recipe whose output has the network's input size needs a prompt taking full-size images
    (one whose own recipe resizes too); the pad prompt frames the image at its own size."""
    name = config.extra.get("augment")
    if name is None:
        return getattr(prompt_cls, "DEFAULT_AUGMENT", NONE)
    if isinstance(name, bool):
        name = "crop_flip" if name else NONE
    recipe = resolve_recipe(name, prompt_legacy_augment(prompt_cls))
    if recipe_resizes(recipe) and not recipe_resizes(getattr(prompt_cls, "CROP_FLIP", NONE)):
        raise UserError(f"--augment {name}: its views have the network's input size, and --prompt {config.prompt} takes the image at its own size")
    return recipe


def count(params) -> int:
    return sum(p.numel() for p in params)


def prompt_spec(config: RunConfig, data: TargetData, mean, std, out_size: int, options: PromptOptions) -> PromptSpec:
    """The prompt's spec; its initial values come from the run's own ``prompt`` generator, so they
    do not depend on how many random numbers building the network drew."""
    generator = init_generator(config.seed, "prompt")
    return PromptSpec(data.image_size, mean, std, out_size, config.prompt_init, data.prompt_mask, options=options, generator=generator)


def build_visual_prompt(config: RunConfig, data: TargetData, runtime: Runtime) -> Experiment:
    prompt_cls = PROMPTS[PROMPT_CHOICES.resolve(config.prompt)]
    options = prompt_options(config, prompt_cls)
    recipe = resolve_augment(config, prompt_cls)
    net = load_network(config.network, config.weights)
    prompt = prompt_cls(prompt_spec(config, data, net.mean, net.std, net.input_size, options))
    # --mapping head reads the features the network's final layer would read
    network, num_source = features_network(net.model) if reads_features(config.mapping) else (net.model, net.num_classes)
    mapping = build_mapping(config.mapping, num_source, data.num_classes, interval=config.mapping_interval, seed=config.seed)
    model = ReprogrammingModel(prompt, network, mapping, channels_last=config.channels_last, fold_batch_norm=config.fold_bn,
                               fast_frozen_ops=config.fast_frozen_ops, recompute=config.recompute)  # fmt: skip
    augment = build_recipe(recipe, data.image_size, net.input_size)
    groups, info = parameter_groups(config, prompt, mapping)
    return Experiment(
        model=model,
        source_names=net.class_names,
        train_augment=augment,
        param_groups=groups,
        info={"augment": recipe, **info},
        optimizer_hooks=gradient_hooks(config, prompt),
    )


GRADIENT_RULES = ("raw", "normalised")


def gradient_hooks(config: RunConfig, prompt: nn.Module) -> list:
    """``--gradient-rule normalised``: each prompt parameter's gradient divided by its L2 norm, the
    ``affine`` and ``gain`` ones (ACAVP) then clipped (:mod:`algorithms.gradient_rules`)."""
    rule = config.extra.get("gradient_rule") or "raw"
    if rule not in GRADIENT_RULES:
        raise UserError(f"unknown --gradient-rule {rule!r}; choose {' or '.join(GRADIENT_RULES)}")
    if rule == "raw":
        return []
    clipped = [getattr(prompt, name) for name in ("affine", "gain") if isinstance(getattr(prompt, name, None), nn.Parameter)]
    return [normalise_and_clip([p for p in prompt.parameters() if p.requires_grad], clipped)]


def parameter_groups(config: RunConfig, prompt: nn.Module, mapping: nn.Module) -> tuple[list[dict] | None, dict]:
    """Optimizer groups and the parameter counts for results.json.

    The prompt's pattern learns at ``--lr``; a mask network inside the prompt (SMM) at
    ``--mask-lr``, decayed with the schedule unless ``--no-mask-decay``; a trainable mapping
    (``--mapping linear``) at ``--mapping-lr``. One group (the default) when nothing differs.
    """
    mask_net = getattr(prompt, "mask_network", None)
    mask_params = [] if mask_net is None else [p for p in mask_net.parameters() if p.requires_grad]
    mask_ids = {id(p) for p in mask_params}
    pattern_params = [p for p in prompt.parameters() if p.requires_grad and id(p) not in mask_ids]
    mapping_params = [p for p in mapping.parameters() if p.requires_grad]
    info = {"prompt_params": count(pattern_params) + count(mask_params), "mapping_params": count(mapping_params)}
    if mask_net is not None:
        info["mask_params"] = count(mask_params)
    if not mask_params and not mapping_params:
        return None, info
    groups = [{"params": pattern_params}]
    if mask_params:
        mask_lr = config.lr if config.extra.get("mask_lr") is None else config.extra["mask_lr"]
        groups.append({"params": mask_params, "lr": mask_lr, "scheduled": bool(config.extra.get("mask_decay", True))})
    if mapping_params and getattr(mapping, "reads_features", False):  # --mapping head: its own optimizer
        groups.append(head_group(config.extra, mapping_params))
    elif mapping_params:  # a trainable mapping (linear) learns at --mapping-lr
        mapping_lr = config.lr if config.extra.get("mapping_lr") is None else config.extra["mapping_lr"]
        groups.append({"params": mapping_params, "lr": mapping_lr})
    return groups, info


def prompts_with_mask() -> list[str]:
    return sorted(name for name, cls in PROMPTS.items() if "mask_layers" in getattr(cls, "OPTIONS", ()))


def add_visual_prompt_arguments(group) -> None:
    defaults = PromptOptions()
    defaults_augment = ", ".join(f"{name} {getattr(cls, 'DEFAULT_AUGMENT', NONE)}" for name, cls in sorted(PROMPTS.items()))
    legacy = ", ".join(f"{name} {cls.CROP_FLIP}" for name, cls in sorted(PROMPTS.items()) if hasattr(cls, "CROP_FLIP"))
    group.add_argument("--augment", default=None, metavar="RECIPE",
                       help=recipe_help(f"training-batch augmentation (default per prompt: {defaults_augment})",
                                        f"earlier spellings: crop_flip = the prompt's paper recipe ({legacy}); trivialaugment = trivialaugment_wide then it"))  # fmt: skip
    group.add_argument("--no-augment", dest="augment", action="store_const", const=NONE, help="same as --augment none")
    group.add_argument("--gradient-rule", choices=GRADIENT_RULES, default=None,
                       help="raw: the loss's gradients; normalised: each prompt parameter's gradient divided by its L2 norm (EVP, ACAVP's CLIP recipe),"
                            " ACAVP's affine and gain gradients then clipped element-wise (default: raw; acavp_vp: normalised)")  # fmt: skip
    group.add_argument("--mapping-lr", type=positive_float, default=None, metavar="LR",
                       help="learning rate of a trainable mapping (--mapping linear) (default: --lr)")  # fmt: skip
    add_head_arguments(group)
    group.add_argument("--input-size", type=positive_int, default=None, metavar="N",
                       help="--prompt pad: resize the image to N x N (antialiased bilinear) before padding it into the network's input"
                            " (AutoVP's input scaling) (default: the image's own size)")  # fmt: skip
    group.add_argument("--rank", type=positive_int, default=None, metavar="R",
                       help=f"--prompt lowrank: rank of the pattern B @ A per channel (default: {defaults.rank})")  # fmt: skip
    group.add_argument("--warp-pivot", choices=("corner", "centre"), default=None,
                       help="--prompt acavp: the point the warp rotates and scales about: corner = the image's top-left corner, as ACAVP's reference"
                            f" (an L-shaped empty band); centre = its middle (a frame) (default: {defaults.warp_pivot})")  # fmt: skip
    group.add_argument("--mask-layers", type=positive_int, default=None, metavar="N",
                       help=f"--prompt smm: convolutions of the mask network (5: 3-8-16-32-64-3 as for ResNets in SMM; 6 adds 64-128 as for ViT) (default: {defaults.mask_layers})")  # fmt: skip
    group.add_argument("--mask-patch", type=positive_int, default=None, metavar="P",
                       help=f"--prompt smm: each mask value covers a P x P patch (P a power of two; log2 P max-pools) (default: {defaults.mask_patch})")  # fmt: skip
    group.add_argument("--mask-lr", type=positive_float, default=None, metavar="LR",
                       help="--prompt smm: Adam learning rate of the mask network (SMM: 0.01 for CNNs, 0.001 for ViT) (default: --lr)")  # fmt: skip
    group.add_argument("--mask-decay", action=argparse.BooleanOptionalAction, default=None,
                       help="--prompt smm: decay the mask network's learning rate with --scheduler like the pattern's; SMM keeps it constant for ViT: --no-mask-decay (default: on)")  # fmt: skip


def check_visual_prompt(config: RunConfig) -> None:
    """Flag combinations, before any data loads: a per-prompt flag given to a prompt that ignores it."""
    prompt_cls = PROMPTS[PROMPT_CHOICES.resolve(config.prompt)]
    prompt_options(config, prompt_cls)
    resolve_augment(config, prompt_cls)
    check_head_options(config)
    for flag, key in (("--mask-lr", "mask_lr"), ("--no-mask-decay", "mask_decay")):
        if not has_mask_network(config) and config.extra.get(key) not in (None, True):
            raise UserError(f"{flag} applies to prompts with a mask network (--prompt {' or --prompt '.join(prompts_with_mask())}), not --prompt {config.prompt}")
    for flag, key in (("--mapping-lr", "mapping_lr"), ("--mask-lr", "mask_lr")):
        value = config.extra.get(key)
        if value is not None and value <= 0:
            raise UserError(f"{flag} must be positive, got {value}")


def has_mask_network(config: RunConfig) -> bool:
    """Whether ``--prompt`` holds a mask network (SMM). Its batch norms train, so a batch computed
    in chunks (``--micro-batch``) normalises each chunk on its own and trains something else."""
    return PROMPT_CHOICES.resolve(config.prompt) in prompts_with_mask()


# The ILM-VP code trains the prompt under fp16 autocast with a gradient scaler.
register_family(
    "visual_prompt",
    build_visual_prompt,
    add_visual_prompt_arguments,
    prompts=PROMPT_CHOICES,
    check=check_visual_prompt,
    complete=complete_head_options,
    cuda_precision="fp16",
    batch_dependent=has_mask_network,
    augment_recipe=lambda config: resolve_augment(config, PROMPTS[PROMPT_CHOICES.resolve(config.prompt)]),
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
register_method(MethodSpec(
    "smm_vp",
    "visual_prompt",
    "SMM: sample-specific masked visual prompt with ILM (Cai et al., ICML 2024); --mapping picks another mapping.",
    {**_VP_DEFAULTS, "mapping": "ilm", "prompt": "smm"},
))
# ACAVP (Enomoto, NeurIPS 2025): SGD lr 40 with momentum 0.9, cosine decay, batch 256, 1000 epochs,
# TrivialAugment (the prompt's default --augment), the one-off frequency mapping on CNNs. The paper
# uses lr 40 with normalised gradients on CLIP; on a CNN lr 40 on raw gradients diverged (NaN loss
# in the first epoch on DTD-10, EfficientNet-Lite0) while the affine's raw gradients are about 1000x
# the prompt's per value, so no one raw rate suits all three: the CNN default is the CLIP rule too,
# at lr 1 (2 epochs on DTD-10: lr 40 29.2 % test, lr 4 and lr 1 55.4 %, lr 1 the best validation;
# docs/beyond.md, "ACAVP").
ACAVP_CNN_LR = 1.0
register_method(MethodSpec(
    "acavp_vp",
    "visual_prompt",
    "ACAVP: affine warp, colour gain and additive prompt in the empty band, TrivialAugment, frequency label mapping (Enomoto, NeurIPS 2025).",
    {"epochs": 1000, "lr": ACAVP_CNN_LR, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.0, "scheduler": "cosine",
     "batch_size": 256, "mapping": "flm", "prompt": "acavp", "gradient_rule": "normalised"},
))
