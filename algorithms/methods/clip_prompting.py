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

import argparse

import torch
from torch import nn

from algorithms.engine import Augment, Experiment, evaluation_batch_size, top1_accuracy
from algorithms.engine.interruption import stoppable_pass
from algorithms.gradient_rules import ACAVP_CLIP_VALUE, normalise_and_clip
from algorithms.mappings import build_mapping
from algorithms.methods.registry import MethodSpec, register_family, register_method
from algorithms.runtime import Runtime
from algorithms.settings import RunConfig
from common import progress
from common.argtypes import int_in, positive_float, positive_int
from common.errors import UserError
from data.augment_draws import AugmentDraws
from data.augment_recipes import build_recipe
from data.loader import BatchLoader
from data.registry import TargetData
from models.clip.model import CLIP_NETWORKS, CLIPClassifier, CLIPPreprocess, LoadedCLIP, clip_input_size, find_weights, load_clip
from models.clip.prompts import CLIP_PROMPT_CHOICES, AffineColourAdditiveCLIPPrompt, PromptedCLIPInput, RandomPatchPrompt, build_clip_prompt, clip_prompt_input_size
from models.clip.templates import TEMPLATES, fill
from models.clip.text import clip_class_name, text_embeddings
from models.reprogrammer import ReprogrammingModel


def add_clip_model_arguments(group: argparse._ArgumentGroup) -> None:
    """The flags that choose CLIP's weights (every CLIP method)."""
    group.add_argument("--clip-pretrained", default="openai", metavar="TAG",
                       help="open_clip pretrained tag of --network (e.g. openai, laion2b_s34b_b79k); none: random weights")  # fmt: skip
    group.add_argument("--clip-weights", default=None, metavar="FILE",
                       help="local CLIP checkpoint (open_clip or OpenAI .pt) (default: the tag's file from the cache)")  # fmt: skip


def add_clip_arguments(group: argparse._ArgumentGroup) -> None:
    add_clip_model_arguments(group)
    group.add_argument("--text-prompts", choices=["all", "single"], default="all",
                       help=f"all: the {len(TEMPLATES)} templates x K class names as virtual labels; single: template --template-number")  # fmt: skip
    group.add_argument("--template-number", type=int_in(0, len(TEMPLATES) - 1), default=0, metavar="N",
                       help=f"template (0..{len(TEMPLATES) - 1}; 0 = {TEMPLATES[0]!r}) for single and for zero-shot")  # fmt: skip
    group.add_argument("--class-names", choices=["reference", "readable"], default="reference",
                       help="class names in the text prompts: reference = those of the official ILM-VP code (GTSRB: its label map, "
                            "'20 speed'); readable = the dataset's descriptive names ('speed limit 20'); both lower-cased, _ and - as spaces")  # fmt: skip
    group.add_argument("--prompt-size", type=positive_int, default=30, metavar="PX", help="padding width / patch side in pixels of the 224 input")
    group.add_argument("--rank", type=positive_int, default=None, metavar="R", help="--prompt lowrank: rank of the pattern B @ A per channel (default: 4)")
    group.add_argument("--no-zero-shot", dest="zero_shot", action="store_false", help="skip the zero-shot accuracy before training")
    # absent unless given (SUPPRESS), so the folders of runs without a trainable mapping keep their names
    group.add_argument("--mapping-lr", type=positive_float, default=argparse.SUPPRESS, metavar="LR",
                       help=f"learning rate of a trainable mapping (--mapping linear), with --optimizer and the schedule of the prompt;"
                            f" the prompt's SGD lr 40 makes it diverge (default: {CLIP_MAPPING_LR})")  # fmt: skip


# --mapping linear's learning rate under the CLIP scripts' SGD (momentum 0.9, cosine): see docs/clip.md
CLIP_MAPPING_LR = 0.01


def check_clip_prompting(config: RunConfig) -> None:
    template_number(config)


def complete_clip_prompting(config: RunConfig) -> None:
    """A trainable mapping's learning rate joins the settings (and so the run's identity) only where it is used."""
    if config.mapping == "linear" and config.extra.get("mapping_lr") is None:
        config.extra["mapping_lr"] = CLIP_MAPPING_LR


def clip_parameter_groups(config: RunConfig, prompt: nn.Module, mapping: nn.Module) -> list[dict] | None:
    """The prompt at ``--lr``; a trainable mapping at ``--mapping-lr``; one group when the mapping has no parameters."""
    mapping_params = [p for p in mapping.parameters() if p.requires_grad]
    if not mapping_params:
        return None
    lr = config.extra.get("mapping_lr") or CLIP_MAPPING_LR
    return [{"params": [p for p in prompt.parameters() if p.requires_grad]}, {"params": mapping_params, "lr": lr}]


def clip_weights(config: RunConfig) -> None:
    """CLIP's weights file found (or downloaded) before any image is decoded."""
    extra = config.extra
    find_weights(config.network, extra.get("clip_pretrained", "openai"), extra.get("clip_weights") or config.weights)


def clip_from_config(config: RunConfig) -> LoadedCLIP:
    extra = config.extra
    return load_clip(config.network, extra.get("clip_pretrained", "openai"), extra.get("clip_weights") or config.weights)


def template_number(config: RunConfig) -> int:
    n = int(config.extra.get("template_number", 0))
    if not 0 <= n < len(TEMPLATES):
        raise UserError(f"--template-number must be in 0..{len(TEMPLATES) - 1}, got {n}")
    return n


def text_class_names(config: RunConfig, data: TargetData) -> list[str]:
    """The class names for the text prompts (``--class-names``), before :func:`clip_class_name`."""
    choice = config.extra.get("class_names", "reference")
    if choice not in ("reference", "readable"):
        raise UserError(f"unknown --class-names {choice!r}; choose reference or readable")
    return list(data.text_names) if choice == "reference" and data.text_names is not None else list(data.class_names)


def zero_shot_accuracy(model: nn.Module, data: TargetData, runtime: Runtime, batch_size: int, resident: bool | None = None) -> float:
    """Top-1 test accuracy (%) of ``model`` (uint8 -> [0, 1] -> logits over the K classes)."""
    model.to(runtime.device).eval()
    loader = BatchLoader(data.test, batch_size, runtime.device, shuffle=False, rank=runtime.rank, world_size=runtime.world_size, resident=resident)  # fmt: skip
    batches = progress.bar(loader, desc="zero-shot test", total=len(loader), unit="batch", enabled=runtime.is_main)
    return top1_accuracy(model, stoppable_pass(batches, loader, "zero-shot test"), runtime)


def build_clip_visual_prompt(config: RunConfig, data: TargetData, runtime: Runtime) -> Experiment:
    extra = config.extra
    number = template_number(config)
    mode = extra.get("text_prompts", "all")
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
    if extra.get("zero_shot", True) and not config.eval_only:
        single = embeddings[templates.index(TEMPLATES[number])]
        zero_shot = nn.Sequential(preprocess, CLIPClassifier(clip.model.visual, clip.model.logit_scale, single))
        acc = zero_shot_accuracy(zero_shot, data, runtime, evaluation_batch_size(config, data.batch_size), config.resident_data)
        info.update(zero_shot_test_acc=acc, zero_shot_template=TEMPLATES[number])
        if runtime.is_main:
            print(f"zero-shot test accuracy (no prompt, template {number} {TEMPLATES[number]!r}): {acc:.2f}%", flush=True)
    classifier = CLIPClassifier(clip.model.visual, clip.model.logit_scale, embeddings.flatten(0, 1))
    prompt = build_clip_prompt(
        config.prompt, clip.image_size, int(extra.get("prompt_size", 30)), config.prompt_init, seed=config.seed, rank=extra.get("rank"),
        mean=clip.mean, std=clip.std,
    )
    mapping = build_mapping(config.mapping, classifier.num_labels, data.num_classes, interval=config.mapping_interval, seed=config.seed)
    model = ReprogrammingModel(prompted_input(clip, prompt), classifier, mapping, channels_last=config.channels_last, recompute=config.recompute)
    source_names = [fill(t, c) for t in templates for c in names]
    groups = clip_parameter_groups(config, prompt, mapping)
    augment, hooks = prompt_augment(prompt), []
    if isinstance(prompt, AffineColourAdditiveCLIPPrompt):  # ACAVP's CLIP recipe: TrivialAugment, normalised and clipped gradients
        augment = build_recipe(ACAVP_CLIP_RECIPE, (clip.image_size, clip.image_size), clip.image_size)
        hooks.append(normalise_and_clip([prompt.affine, prompt.gain, prompt.prompt], [prompt.affine, prompt.gain]))
        info.update(augment=ACAVP_CLIP_RECIPE, gradient_rule=f"unit L2 norm per parameter; gain, affine clipped to +-{ACAVP_CLIP_VALUE:g}")
    return Experiment(model=model, source_names=source_names, train_augment=augment, info=info, param_groups=groups, optimizer_hooks=hooks)


# ACAVP's training views for CLIP (Enomoto, 2025): resize (+32), random crop and flip, then TrivialAugment
ACAVP_CLIP_RECIPE = "resize32_crop_flip+trivialaugment_wide"


def random_patch_moves(config: RunConfig) -> bool:
    """The CLIP families' batch dependence: ``random_patch`` draws one location per forward call,
    so a batch computed in chunks sees several."""
    return config.prompt == "random_patch"


def clip_augment_recipe(config: RunConfig) -> str:
    """The recipe a CLIP prompt run trains on (its run identity): ACAVP's, else none."""
    return ACAVP_CLIP_RECIPE if config.prompt == "acavp" else "none"


def prompt_augment(prompt: nn.Module) -> Augment | None:
    """For ``random_patch``: the training "augmentation" that hands the prompt the engine's
    per-epoch generator, so locations follow (seed, epoch) and a resumed run replays them."""
    if not isinstance(prompt, RandomPatchPrompt):
        return None

    def augment(x: torch.Tensor, draws: AugmentDraws) -> torch.Tensor:
        prompt.use_generator(draws.epoch_generator)  # one location per batch, from (seed, epoch)
        return x

    return augment


def prompted_input(clip: LoadedCLIP, prompt: nn.Module) -> PromptedCLIPInput:
    """CLIP's preprocessing at the side the prompt takes (CLIP's, or less for ``resize_padding``), then the prompt."""
    side = getattr(prompt, "input_size", clip.image_size)
    return PromptedCLIPInput(CLIPPreprocess(side, clip.mean, clip.std), prompt)


def clip_input_side(config: RunConfig) -> int:
    """Where ``--decode crop`` decodes the stored images: CLIP's input size for ``--network``, or
    the smaller side a prompt takes (``resize_padding``), so they are resized once, as PIL does."""
    size = clip_input_size(config.network)
    return clip_prompt_input_size(config.prompt, size, int(config.extra.get("prompt_size", 30)))


# The ILM-VP code trains the CLIP prompt under fp16 autocast with a gradient scaler. The random
# patch moves once per forward call, so a batch computed in chunks sees several locations.
register_family(
    "clip_visual_prompt",
    build_clip_visual_prompt,
    add_clip_arguments,
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
    "scheduler": "cosine", "prompt": "padding", "prompt_init": "zero", "decode": "crop",
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
