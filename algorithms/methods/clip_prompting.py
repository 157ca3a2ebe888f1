"""Visual prompting of CLIP: ILM-TP-VP (Chen et al., CVPR 2023) and SINGLE-TP-VP (Bahng et al., 2022).

The "network" the engine sees is CLIP's frozen image encoder scored against fixed text
embeddings. With ``--text-prompts all`` its outputs are ``S = T x K`` virtual source labels, one
per (template, class name) pair in template-major order (label ``t * K + k`` is template ``t``
filled with class ``k``), and ``--mapping`` (ILM by default) assigns one of them to each target
class every epoch, so a target may end up represented by another class's text. With
``--text-prompts single`` the outputs are the K class names in template ``--template-number``
and the mapping is the identity.

Before training, the zero-shot accuracy (no prompt, template ``--template-number``, identity
mapping) is measured on the test set and stored next to the prompted accuracy in
``config.json``/``results.json`` (``zero_shot_test_acc``), as Bahng et al. report "Original Acc"
beside "Prompt Acc".
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from algorithms.engine import Augment, Experiment, evaluation_batch_size, top1_accuracy
from algorithms.engine.interruption import stoppable_pass
from algorithms.gradient_rules import ACAVP_CLIP_VALUE
from algorithms.mappings import HeadOptions, build_mapping, check_mapping_options, complete_mapping_options, reads_features
from algorithms.mappings.head import NormalisedImageFeatures
from algorithms.methods.prompting import chosen_prompt, gradient_hooks, note_revision, prompt_options, prompt_parameter_groups
from algorithms.methods.registry import MethodSpec, register_family, register_method
from algorithms.runtime import Runtime
from algorithms.settings import RunConfig
from common import progress
from common.argtypes import int_in, positive_float
from common.errors import UserError
from common.options import ALWAYS, Options, option
from common.seeding import init_generator
from data.augment_draws import AugmentDraws
from data.augment_recipes import build_recipe
from data.loader import BatchLoader
from data.registry import TargetData
from models.clip.model import CLIP_NETWORKS, CLIPClassifier, CLIPPreprocess, LoadedCLIP, clip_input_size, find_weights, load_clip
from models.clip.prompts import CLIP_PROMPT_CHOICES, PromptedCLIPInput, build_clip_prompt, clip_prompt_input_size
from models.clip.templates import TEMPLATES, fill
from models.clip.text import clip_class_name, text_embeddings
from models.prompts import CLIP
from models.reprogrammer import ReprogrammingModel

# --mapping linear's learning rate under the CLIP scripts' SGD (momentum 0.9, cosine): see docs/clip.md
CLIP_MAPPING_LR = 0.01


@dataclass(frozen=True)
class CLIPModelOptions(Options):
    """The flags that choose CLIP's weights (every CLIP method)."""

    RECORDED = ALWAYS
    clip_pretrained: str = option("openai", "open_clip pretrained tag of --network (e.g. openai, laion2b_s34b_b79k); none: random weights", metavar="TAG")
    clip_weights: str | None = option(None, "local CLIP checkpoint (open_clip or OpenAI .pt)", default_help="the tag's file from the cache", metavar="FILE")


@dataclass(frozen=True)
class CLIPPromptingOptions(Options):
    """The flags of the CLIP prompting family (ILM-TP-VP, SINGLE-TP-VP, ACAVP on CLIP)."""

    RECORDED = ALWAYS
    text_prompts: str = option("all", f"all: the {len(TEMPLATES)} templates x K class names as virtual labels; single: template --template-number",
                               choices=["all", "single"])  # fmt: skip
    template_number: int = option(0, f"template (0..{len(TEMPLATES) - 1}; 0 = {TEMPLATES[0]!r}) for single and for zero-shot",
                                  type=int_in(0, len(TEMPLATES) - 1), metavar="N")  # fmt: skip
    class_names: str = option("reference", "class names in the text prompts: reference = those of the official ILM-VP code (GTSRB: its label map,"
                              " '20 speed'); readable = the dataset's descriptive names ('speed limit 20'); both lower-cased, _ and - as spaces",
                              choices=["reference", "readable"])  # fmt: skip
    zero_shot: bool = option(True, "skip the zero-shot accuracy before training", flag="--no-zero-shot", action="store_false")
    # kept only where used (--mapping linear), so the folders of runs without a trainable mapping keep their names
    mapping_lr: float | None = option(None, "learning rate of a trainable mapping (--mapping linear), with --optimizer and the schedule of the prompt;"
                                      " the prompt's SGD lr 40 makes it diverge", recorded="given", default_help=str(CLIP_MAPPING_LR),
                                      type=positive_float, metavar="LR")  # fmt: skip


def check_clip_prompting(config: RunConfig) -> None:
    template_number(config)
    prompt_options(config, CLIP)
    check_mapping_options(config)


def complete_clip_prompting(config: RunConfig) -> None:
    """A trainable mapping's learning rate (the head's options) joins the settings (and so the run's
    identity) only where it is used; so does the chosen prompt's revision on CLIP."""
    note_revision(config, CLIP)
    if config.mapping == "linear" and config.options(CLIPPromptingOptions).mapping_lr is None:
        config.set_options(CLIPPromptingOptions, mapping_lr=CLIP_MAPPING_LR)
    complete_mapping_options(config)


def clip_weights(config: RunConfig) -> None:
    """CLIP's weights file found (or downloaded) before any image is decoded."""
    options = config.options(CLIPModelOptions)
    find_weights(config.network, options.clip_pretrained, options.clip_weights or config.weights)


def clip_from_config(config: RunConfig) -> LoadedCLIP:
    options = config.options(CLIPModelOptions)
    return load_clip(config.network, options.clip_pretrained, options.clip_weights or config.weights)


def template_number(config: RunConfig) -> int:
    n = int(config.options(CLIPPromptingOptions).template_number)
    if not 0 <= n < len(TEMPLATES):
        raise UserError(f"--template-number must be in 0..{len(TEMPLATES) - 1}, got {n}")
    return n


def text_class_names(config: RunConfig, data: TargetData) -> list[str]:
    """The class names for the text prompts (``--class-names``), before :func:`clip_class_name`."""
    choice = config.options(CLIPPromptingOptions).class_names
    if choice not in ("reference", "readable"):
        raise UserError(f"unknown --class-names {choice!r}; choose reference or readable")
    return list(data.text_names) if choice == "reference" and data.text_names is not None else list(data.class_names)


def zero_shot_accuracy(model: nn.Module, data: TargetData, runtime: Runtime, batch_size: int, resident: bool | None = None) -> float:
    """Top-1 test accuracy (%) of ``model`` (uint8 -> [0, 1] -> logits over the K classes)."""
    model.to(runtime.device).eval()
    loader = BatchLoader(data.test, batch_size, runtime.device, shuffle=False, rank=runtime.rank, world_size=runtime.world_size, resident=resident)  # fmt: skip
    batches = progress.bar(loader, desc="zero-shot test", total=len(loader), unit="batch", enabled=runtime.is_main)
    return top1_accuracy(model, stoppable_pass(batches, loader, "zero-shot test"), runtime)


def clip_prompt(config: RunConfig, clip: LoadedCLIP, generator: torch.Generator | None = None) -> nn.Module:
    """``--prompt`` with its options for ``clip``; initial values from ``generator`` (default: the run's ``prompt`` stream)."""
    generator = init_generator(config.seed, "prompt") if generator is None else generator
    return build_clip_prompt(config.prompt, clip.image_size, prompt_options(config, CLIP), config.prompt_init, mean=clip.mean, std=clip.std,
                             seed=config.seed, generator=generator)  # fmt: skip


def clip_prompt_training(config: RunConfig, clip: LoadedCLIP, prompt: nn.Module, mapping: nn.Module) -> dict:
    """What the engine needs of a CLIP prompt beyond the model: optimizer groups, augmentation, gradient rule, info."""
    groups, info = prompt_parameter_groups(prompt, mapping, config.lr, config.options(CLIPPromptingOptions).mapping_lr, config.options(HeadOptions))
    recipe = clip_augment_recipe(config)
    augment = prompt_augment(prompt) if recipe == "none" else build_recipe(recipe, (clip.image_size, clip.image_size), clip.image_size)
    rule = type(prompt).GRADIENT_RULE.get(CLIP, "raw")
    if recipe != "none":
        info["augment"] = recipe
    if rule != "raw":
        clipped = {id(p) for p in prompt.clipped_parameters()}
        names = ", ".join(n for n, p in prompt.named_parameters() if id(p) in clipped)
        info["gradient_rule"] = f"unit L2 norm per parameter; {names} clipped to +-{ACAVP_CLIP_VALUE:g}"
    return {"param_groups": groups, "train_augment": augment, "optimizer_hooks": gradient_hooks(rule, prompt), "info": info}


def build_clip_visual_prompt(config: RunConfig, data: TargetData, runtime: Runtime) -> Experiment:
    options = config.options(CLIPPromptingOptions)
    number = template_number(config)
    mode = options.text_prompts
    clip = clip_from_config(config)
    names = [clip_class_name(c) for c in text_class_names(config, data)]
    templates = list(TEMPLATES) if mode == "all" else [TEMPLATES[number]]
    embeddings = text_embeddings(clip, templates, names, device=runtime.device, progress=runtime.is_main)  # [T, K, D]
    preprocess = CLIPPreprocess(clip.image_size, clip.mean, clip.std)
    info = {
        "clip_model": clip.name,
        "clip_weights": clip.weights_id,
        "text_prompts": mode,
        "num_templates": len(templates),
        "num_source_labels": len(templates) * len(names),
    }
    if options.zero_shot and not config.eval_only:
        single = embeddings[templates.index(TEMPLATES[number])]
        zero_shot = nn.Sequential(preprocess, CLIPClassifier(clip.model.visual, clip.model.logit_scale, single))
        acc = zero_shot_accuracy(zero_shot, data, runtime, evaluation_batch_size(config, data.batch_size), config.resident_data)
        info.update(zero_shot_test_acc=acc, zero_shot_template=TEMPLATES[number])
        if runtime.is_main:
            print(f"zero-shot test accuracy (no prompt, template {number} {TEMPLATES[number]!r}): {acc:.2f}%", flush=True)
    classifier = CLIPClassifier(clip.model.visual, clip.model.logit_scale, embeddings.flatten(0, 1))
    prompt = clip_prompt(config, clip)
    if reads_features(config.mapping):  # --mapping head: on the normalised image embedding, not the text scores
        classifier = NormalisedImageFeatures(clip.model.visual)
    num_source = embeddings.shape[-1] if reads_features(config.mapping) else classifier.num_labels
    mapping = build_mapping(config.mapping, num_source, data.num_classes, interval=config.mapping_interval, seed=config.seed)
    model = ReprogrammingModel(prompted_input(clip, prompt), classifier, mapping, channels_last=config.channels_last, recompute=config.recompute)
    source_names = [fill(t, c) for t in templates for c in names]
    training = clip_prompt_training(config, clip, prompt, mapping)
    return Experiment(model=model, source_names=source_names, info={**info, **training.pop("info")}, **training)


def random_patch_moves(config: RunConfig) -> bool:
    """The CLIP families' batch dependence: a prompt drawing per forward call (``random_patch``)
    or using batch statistics (``smm``), so a batch computed in chunks trains something else."""
    return bool(getattr(chosen_prompt(config, CLIP), "BATCH_DEPENDENT", False))


def clip_augment_recipe(config: RunConfig) -> str:
    """The recipe a CLIP prompt run trains on (its run identity): the prompt's paper recipe (ACAVP's), none for the others."""
    return getattr(chosen_prompt(config, CLIP), "DEFAULT_AUGMENT", "none")


def prompt_augment(prompt: nn.Module) -> Augment | None:
    """For a prompt drawing per batch (``random_patch``): the training "augmentation" that hands it
    the engine's per-epoch generator, so locations follow (seed, epoch) and a resumed run replays them."""
    if not hasattr(prompt, "use_generator"):
        return None

    def augment(x: torch.Tensor, draws: AugmentDraws) -> torch.Tensor:
        prompt.use_generator(draws.epoch_generator)  # one location per batch, from (seed, epoch)
        return x

    return augment


def prompted_input(clip: LoadedCLIP, prompt: nn.Module) -> PromptedCLIPInput:
    """CLIP's preprocessing (without its normalization, which the prompt does) at the side the prompt takes, then the prompt."""
    side = type(prompt).input_side(clip.image_size, getattr(prompt, "options", None))
    return PromptedCLIPInput(CLIPPreprocess(side, clip.mean, clip.std, normalized=False), prompt)


def clip_input_side(config: RunConfig) -> int:
    """Where ``--decode crop`` decodes the stored images: CLIP's input size for ``--network``, or
    the smaller side a prompt takes (``resize_padding``), so they are resized once, as PIL does."""
    size = clip_input_size(config.network)
    if config.prompt is None or config.prompt not in CLIP_PROMPT_CHOICES.names() + list(CLIP_PROMPT_CHOICES.aliases()):
        return size
    cls = chosen_prompt(config, CLIP)
    return clip_prompt_input_size(config.prompt, size, config.options(cls.OPTIONS) if getattr(cls, "OPTIONS", None) is not None else None)


# The ILM-VP code trains the CLIP prompt under fp16 autocast with a gradient scaler. The random
# patch moves once per forward call, so a batch computed in chunks sees several locations.
register_family(
    "clip_visual_prompt",
    build_clip_visual_prompt,
    options=(CLIPModelOptions, CLIPPromptingOptions, HeadOptions),
    networks=CLIP_NETWORKS,
    prompts=CLIP_PROMPT_CHOICES,
    check=check_clip_prompting,
    complete=complete_clip_prompting,
    input_size=clip_input_side,
    weights=clip_weights,
    cuda_precision="fp16",
    batch_dependent=random_patch_moves,
    augment_recipe=clip_augment_recipe,
)

# Chen et al. (2023) and Bahng et al. (2022): SGD lr 40, momentum 0.9, no weight decay, cosine
# decay per iteration; Bahng et al. also warm up for 1000 steps and train 1000 epochs. Images go
# through CLIP's own preprocessing from the stored file (resize the shorter side, centre crop).
_CLIP_DEFAULTS = {
    "network": "ViT-B/32", "epochs": 200, "lr": 40.0, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.0,
    "scheduler": "cosine", "prompt": "padding", "prompt_init": "zero", "decode": "crop", "prompt_size": 30,
}  # fmt: skip
register_method(MethodSpec(
    "ilm_tp_vp",
    "clip_visual_prompt",
    "ILM-TP-VP: CLIP visual prompt; each target class mapped every epoch to one of the 81 x K template-class texts (Chen et al., CVPR 2023).",
    {**_CLIP_DEFAULTS, "mapping": "ilm", "text_prompts": "all"},
))
register_method(MethodSpec(
    "single_tp_vp",
    "clip_visual_prompt",
    "SINGLE-TP-VP: CLIP visual prompt with one fixed text template and the identity mapping (Bahng et al., 2022).",
    {**_CLIP_DEFAULTS, "mapping": "identity", "text_prompts": "single"},
))
# ACAVP on CLIP (Enomoto, NeurIPS 2025): the zero-shot classifier with one template (identity
# mapping), SGD lr 40 on unit-norm gradients (gain and affine also clipped), cosine, batch 256,
# 1000 epochs, TrivialAugment then resize-crop-flip on training images.
register_method(MethodSpec(
    "acavp_clip",
    "clip_visual_prompt",
    "ACAVP on CLIP: affine warp, colour gain, additive prompt; normalised gradients, TrivialAugment, one template (Enomoto, NeurIPS 2025).",
    {**_CLIP_DEFAULTS, "prompt": "acavp", "mapping": "identity", "text_prompts": "single", "epochs": 1000, "batch_size": 256},
))
