"""Visual prompting of a frozen CNN: train the prompt, map the labels (ILM-VP, FLM-VP, RLM-VP, BLM-VP, BLM+-VP, SMM, ACAVP).

The methods differ only in their default ``--mapping`` (SMM and ACAVP also in ``--prompt`` and ACAVP in its optimizer recipe);
``--prompt`` picks the input transform, ``--augment`` the training recipe.
"""
from __future__ import annotations

from dataclasses import dataclass

from algorithms.engine import Experiment
from algorithms.mappings import HeadOptions, build_mapping, check_mapping_options, complete_mapping_options, features_network, reads_features
from algorithms.methods.prompting import GRADIENT_RULES, chosen_prompt, gradient_hooks, prompt_options, prompt_parameter_groups
from algorithms.methods.registry import MethodSpec, register_family, register_method
from algorithms.runtime import Runtime
from algorithms.settings import RunConfig
from common.argtypes import positive_float
from common.errors import UserError
from common.options import ALWAYS, Options, option
from common.seeding import init_generator
from data.augment_recipes import CHAIN, NONE, build_recipe, recipe_help, recipe_resizes, resolve_recipe
from data.registry import TargetData
from models.networks import load_network
from models.prompts import CNN, PROMPT_CHOICES, PROMPTS, PromptSpec, build_prompt
from models.reprogrammer import ReprogrammingModel


def _augment_help() -> str:
    listed = [(name, cls) for name, cls in sorted(PROMPTS.items()) if name in PROMPT_CHOICES.names()]
    defaults = ", ".join(f"{name} {getattr(cls, 'DEFAULT_AUGMENT', NONE)}" for name, cls in listed)
    legacy = ", ".join(f"{name} {cls.CROP_FLIP}" for name, cls in listed if hasattr(cls, "CROP_FLIP"))
    return recipe_help(f"training-batch augmentation (default per prompt: {defaults})",
                       f"earlier spellings: crop_flip = the prompt's paper recipe ({legacy}); trivialaugment = trivialaugment_wide then it")  # fmt: skip


@dataclass(frozen=True)
class VisualPromptOptions(Options):
    """The CNN prompt family's own flags (each prompt's own are declared by the prompt)."""

    RECORDED = ALWAYS  # every run of the family has kept these, unset or not: their folders hold them
    augment: str | None = option(None, _augment_help, metavar="RECIPE")  # help built when shown: every registered prompt's recipe
    gradient_rule: str | None = option(None, "raw: the loss's gradients; normalised: each prompt parameter's gradient divided by its L2 norm (EVP, ACAVP's CLIP"
                                       " recipe), the parameters the prompt names (ACAVP's affine and gain) then clipped element-wise",
                                       recorded="given", default_help="raw; acavp_vp: normalised", choices=GRADIENT_RULES)  # fmt: skip
    mapping_lr: float | None = option(None, "learning rate of a trainable mapping (--mapping linear)", default_help="--lr", type=positive_float, metavar="LR")


def add_visual_prompt_arguments(group) -> None:
    """Another spelling of an option's flag."""
    group.add_argument("--no-augment", dest="augment", action="store_const", const=NONE, help="same as --augment none")


# The spellings whose meaning follows the prompt (none; its paper's crop; TrivialAugment then it):
# the augmentation axis of tools/search.py, which applies one value to every prompt. Any recipe of
# data.augment_recipes is accepted by --augment as well.
AUGMENT_CHOICES = ("none", "crop_flip", "trivialaugment")


def prompt_legacy_augment(prompt_cls: type) -> dict[str, str]:
    """``--augment``'s spellings of earlier versions for this prompt: ``crop_flip`` was its paper's
    crop-and-flip recipe (``CROP_FLIP``), ``trivialaugment`` TrivialAugment then that recipe."""
    crop = getattr(prompt_cls, "CROP_FLIP", None)
    return {"crop_flip": crop, "trivialaugment": f"trivialaugment_wide{CHAIN}{crop}"} if crop else {}


def resolve_augment(config: RunConfig, prompt_cls: type) -> str:
    """``--augment`` as a canonical recipe (:mod:`data.augment_recipes`): the prompt's paper default
    when not given; True/False, the old on/off flag, mean ``crop_flip`` and ``none``.

    A recipe whose output has the network's input size needs a prompt taking full-size images
    (one whose own recipe resizes too); the pad prompt frames the image at its own size."""
    name = config.options(VisualPromptOptions).augment
    if name is None:
        return getattr(prompt_cls, "DEFAULT_AUGMENT", NONE)
    if isinstance(name, bool):
        name = "crop_flip" if name else NONE
    recipe = resolve_recipe(name, prompt_legacy_augment(prompt_cls))
    if recipe_resizes(recipe) and not recipe_resizes(getattr(prompt_cls, "CROP_FLIP", NONE)):
        raise UserError(f"--augment {name}: its views have the network's input size, and --prompt {config.prompt} takes the image at its own size")
    return recipe


def prompt_spec(config: RunConfig, data: TargetData, mean, std, out_size: int, options: Options | None) -> PromptSpec:
    """The prompt's spec; its initial values come from the run's own ``prompt`` generator, so they
    do not depend on how many random numbers building the network drew."""
    generator = init_generator(config.seed, "prompt")
    return PromptSpec(data.image_size, mean, std, out_size, config.prompt_init, data.prompt_mask, options=options, generator=generator, seed=config.seed, kind=CNN)


def gradient_rule(config: RunConfig, prompt_cls: type) -> str:
    """``--gradient-rule``, else the prompt's default on CNNs, else raw."""
    return config.options(VisualPromptOptions).gradient_rule or getattr(prompt_cls, "GRADIENT_RULE", {}).get(CNN, "raw")


def build_visual_prompt(config: RunConfig, data: TargetData, runtime: Runtime) -> Experiment:
    prompt_cls = chosen_prompt(config, CNN)
    options = prompt_options(config, CNN)
    recipe = resolve_augment(config, prompt_cls)
    net = load_network(config.network, config.weights)
    prompt = build_prompt(config.prompt, prompt_spec(config, data, net.mean, net.std, net.input_size, options))
    # --mapping head reads the features the network's final layer would read
    network, num_source = features_network(net.model) if reads_features(config.mapping) else (net.model, net.num_classes)
    mapping = build_mapping(config.mapping, num_source, data.num_classes, interval=config.mapping_interval, seed=config.seed)
    model = ReprogrammingModel(prompt, network, mapping, channels_last=config.channels_last, fold_batch_norm=config.fold_bn,
                               fast_frozen_ops=config.fast_frozen_ops, recompute=config.recompute)  # fmt: skip
    augment = build_recipe(recipe, data.image_size, net.input_size)
    groups, info = prompt_parameter_groups(prompt, mapping, config.lr, config.options(VisualPromptOptions).mapping_lr, config.options(HeadOptions))
    return Experiment(
        model=model,
        source_names=net.class_names,
        train_augment=augment,
        param_groups=groups,
        info={"augment": recipe, **info},
        optimizer_hooks=gradient_hooks(gradient_rule(config, prompt_cls), prompt),
    )


def check_visual_prompt(config: RunConfig) -> None:
    """Flag combinations, before any data loads: a prompt's or a mapping's option given where another is chosen."""
    prompt_options(config, CNN)
    resolve_augment(config, chosen_prompt(config, CNN))
    check_mapping_options(config)


def has_mask_network(config: RunConfig) -> bool:
    """Whether ``--prompt`` depends on the batch (SMM's mask network: its batch norms train), so a
    batch computed in chunks (``--micro-batch``) normalises each chunk on its own and trains something else."""
    return bool(getattr(chosen_prompt(config, CNN), "BATCH_DEPENDENT", False))


# The ILM-VP code trains the prompt under fp16 autocast with a gradient scaler.
register_family(
    "visual_prompt",
    build_visual_prompt,
    add_visual_prompt_arguments,
    options=(VisualPromptOptions, HeadOptions),
    prompts=PROMPT_CHOICES,
    check=check_visual_prompt,
    complete=complete_mapping_options,
    cuda_precision="fp16",
    batch_dependent=has_mask_network,
    augment_recipe=lambda config: resolve_augment(config, chosen_prompt(config, CNN)),
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
# Prompt + linear head (LoR-VP's ``lp`` output, EVP's linear probing with a prompt): a watermark,
# which at zero leaves the network's input exactly linear probing's, trained with a new linear head
# on the penultimate features in linear probing's optimizer and schedule (Adam, multistep); no
# augmentation, as linear probing. The recipe was chosen on the validation splits of DTD-10 and
# CIFAR-10 1000/500, seed 1, 5 epochs (docs/beyond.md, "Prompt + linear head"): a prompt lr of 1e-4
# and a head lr of 0.01 had the best validation accuracy on both among prompt lr 1e-4/1e-3/1e-2,
# head lr 0.1/0.01, with and without pad-crop-flip; at linear probing's head lr 0.1 the head
# overfits (test loss 2.5) and at prompt lr 1e-2 the prompt moves the features faster than it follows.
HEAD_PROMPT_LR = 1e-4
HEAD_LR = 0.01
register_method(MethodSpec(
    "head_vp",
    "visual_prompt",
    "Prompt + linear head: a watermark prompt trained with a new linear head on the frozen features; at a zero prompt it is linear probing.",
    {**_VP_DEFAULTS, "lr": HEAD_PROMPT_LR, "head_lr": HEAD_LR, "mapping": "head", "prompt": "watermark", "augment": NONE},
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
