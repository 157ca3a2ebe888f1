"""DVP: decoupled visual prompts for CLIP (Cai, Ye, Feng, Qi, Liu, ICML 2025).

``P`` prompts (AttrVR's ``resize_padding`` frame each) go through one frozen CLIP image encoder;
prompt ``i`` is scored only against its own group of class descriptions, and the class logits are
the description scores times a probabilistic reweighting matrix (PRM):
:class:`~models.clip.dvp.DecoupledVisualPrompting`. Two groupings:

* ``cause`` (DVP-cse): ``P = 3`` description files per dataset, ``<stem>_cse_<i>.json``, one per
  cause (shape, colour, texture, ...); ``m`` sentences per class and file, scores ``[B, C, m * P]``;
* ``cluster`` (DVP-cls): ``m`` descriptive sentences per class (AttrVR's ``<stem>_des.json``), split
  by k-means on their text embeddings into ``k`` groups (scikit-learn, ``random_state`` 0; ``k`` per
  dataset as in the paper), scores ``[B, C, m]``.

The engine's default step is DVP's objective as it stands (cross-entropy on the mapped logits,
``scores @ PRM``, with the scores as the source outputs); the method's own part is
:class:`PRMEstimation`, an epoch hook that re-estimates the PRM after every epoch from that epoch's
training scores and keeps the prompts still during the first epoch, which only estimates. The PRM
is the model's label mapping: the engine's :class:`~algorithms.engine.MappingRefit` writes its
per-epoch file and heatmap counts, and never refits it. Its prompts come from the one prompt
registry (``--prompt``, ``resize_padding`` by default, and the prompt's own ``--prompt-size``).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from algorithms.engine import EpochContext, EpochHook, Experiment, MappingRefit, StepOutput
from algorithms.methods.attrvr import METHOD as ATTRVR
from algorithms.methods.attrvr import absolute_path, file_digest
from algorithms.methods.clip_prompting import CLIPModelOptions, clip_from_config, clip_input_side, clip_prompt, clip_weights
from algorithms.methods.prompting import note_revision, prompt_options
from algorithms.methods.registry import MethodSpec, get_method, register_family, register_method
from algorithms.runtime import Runtime
from algorithms.settings import RunConfig
from common.argtypes import positive_int
from common.choices import Choices
from common.errors import UserError
from common.options import ALWAYS, Options, option
from common.seeding import init_generator
from data.augment_recipes import build_recipe
from data.registry import TargetData
from models.clip.attributes import MIN_CHARS, attribute_stem, draw_attributes, stem_file
from models.clip.dvp import DecoupledVisualPrompting, cluster_descriptions, count_top_k
from models.clip.model import CLIP_NETWORKS, CLIPPreprocess, LoadedCLIP
from models.clip.prompts import CLIP_PROMPT_CHOICES
from models.clip.text import text_embeddings
from models.prompts import CLIP

METHOD = "dvp"
GROUPINGS = {
    "cause": "one prompt per cause file <stem>_cse_1..3.json (DVP-cse); scores [B, C, m x 3]",
    "cluster": "k-means groups of the descriptive sentences <stem>_des.json, one prompt per group (DVP-cls); scores [B, C, m]",
}
NUM_CAUSES, DEFAULT_M, DEFAULT_TOP_K = 3, 20, 3
# the paper's k per dataset (by the released files' stem); others: DEFAULT_CLUSTERS
CLUSTERS = {"caltech101": 3, "dtd": 3, "eurosat": 1, "fgvc": 3, "food101": 2, "oxford_flowers": 3, "oxford_pets": 3,
            "stanford_cars": 3, "sun397": 3, "ucf101": 2, "resisc45": 3}  # fmt: skip
DEFAULT_CLUSTERS, KMEANS_SEED = 3, 0
UNAVAILABLE_PROMPTS = {
    "random_patch": "its P prompts would each need their own stream of locations",
    "acavp": "it trains with its own gradient rule and augmentation, which DVP's recipe does not have",
}


def _refuse_unavailable(name: str) -> bool:
    """``--prompt``'s check beyond the listed names: one line with DVP's reason, else CLIP's own refusal."""
    if name in UNAVAILABLE_PROMPTS:
        raise UserError(f"--prompt {name} is not available to DVP: {UNAVAILABLE_PROMPTS[name]}")
    return CLIP_PROMPT_CHOICES.accepts is not None and CLIP_PROMPT_CHOICES.accepts(name)


# ``--prompt`` of DVP: CLIP's prompts but those above, so its --help lists neither them nor their flags
DVP_PROMPT_CHOICES = Choices(
    "prompt",
    lambda: {name: text for name, text in CLIP_PROMPT_CHOICES.entries().items() if name not in UNAVAILABLE_PROMPTS},
    CLIP_PROMPT_CHOICES.aliases,
    accepts=_refuse_unavailable,
)
AUGMENT = "random_resized_crop_flip"  # DVP's training views (random resized crop at 192, flip)
RELEASED = ", ".join(CLUSTERS)  # the eleven CoOp datasets with released description files
SOURCES = {
    "cause": "DVP's code (github.com/caichengyi/DecoupledVP, folder causes/, MIT licence)",
    "cluster": "AttrVR's code (github.com/tmlr-group/AttrVR, folder attributes/gpt3, MIT licence)",
}


@dataclass(frozen=True)
class DVPOptions(Options):
    """DVP's flags (its prompts' own, ``--prompt-size`` among them, are the prompt's: AttrVR's frame of 16 px by default)."""

    RECORDED = ALWAYS
    grouping: str = option("cause", "which descriptions each prompt is scored against: " + "; ".join(f"{k}: {v}" for k, v in GROUPINGS.items()),
                           choices=list(GROUPINGS))  # fmt: skip
    descriptions: str | None = option(None, "folder of the description files, {class name: [sentences]}: <stem>_cse_1..3.json for cause, <stem>_des.json for"
                                      " cluster; stem = the released files' name of the dataset (oxford_pets, oxford_flowers, stanford_cars; else --dataset)",
                                      default_help="none; required", type=absolute_path, metavar="DIR")  # fmt: skip
    descriptions_per_class: int = option(DEFAULT_M, f"sentences drawn per class and file (seeded by --seed) from those of at least {MIN_CHARS} characters;"
                                         " with replacement when fewer remain", type=positive_int, metavar="M")  # fmt: skip
    clusters: int | None = option(None, "--grouping cluster: k-means groups, one prompt each", type=positive_int, metavar="K",
                                  default_help=f"the paper's k for the dataset, {' '.join(f'{s} {k}' for s, k in CLUSTERS.items())}; else {DEFAULT_CLUSTERS}")  # fmt: skip
    prm_top_k: int = option(DEFAULT_TOP_K, "PRM re-estimation: each training sample counts its K highest-scoring descriptions of its own class",
                            type=positive_int, metavar="K")  # fmt: skip


def grouping(config: RunConfig) -> str:
    name = config.options(DVPOptions).grouping
    if name not in GROUPINGS:
        raise UserError(f"unknown --grouping {name!r}; choose {' or '.join(GROUPINGS)}")
    return name


def complete_dvp(config: RunConfig) -> None:
    """The cluster count joins the settings (and the run's identity) resolved, only where it is used;
    so does the chosen prompt's revision on CLIP."""
    note_revision(config, CLIP)
    if grouping(config) == "cluster" and config.options(DVPOptions).clusters is None:
        config.set_options(DVPOptions, clusters=CLUSTERS.get(attribute_stem(config.dataset), DEFAULT_CLUSTERS))


def description_files(config: RunConfig) -> list[Path]:
    """The files the grouping reads, in prompt order (cause) or the one descriptive file (cluster)."""
    folder = config.options(DVPOptions).descriptions
    if folder is None:
        raise UserError("DVP reads class descriptions: pass --descriptions DIR, the folder of <stem>_cse_1..3.json (--grouping cause,"
                        f" from {SOURCES['cause']}) or of <stem>_des.json (--grouping cluster, from {SOURCES['cluster']})")  # fmt: skip
    if grouping(config) == "cause":
        return [stem_file(folder, config.dataset, f"cse_{i}") for i in range(1, NUM_CAUSES + 1)]
    return [stem_file(folder, config.dataset, "des")]


def missing_file_message(config: RunConfig, path: Path) -> str:
    """What is missing, where it was looked for, and where such files come from."""
    kind, stem = grouping(config), attribute_stem(config.dataset)
    wanted = f"{stem}_cse_1..{NUM_CAUSES}.json" if kind == "cause" else f"{stem}_des.json"
    where = f"description file not found: {path} (--grouping {kind} reads {wanted} from --descriptions {path.parent})"
    if stem in CLUSTERS:
        return f"{where}; {stem}'s files come with {SOURCES[kind]}: pass their folder"
    return (f"{where}; {SOURCES[kind]} has them only for {RELEASED}: for --dataset {config.dataset} write them yourself,"
            " one JSON object {class name: [sentences]} per file")  # fmt: skip


def check_dvp(config: RunConfig) -> None:
    """Before any data loads: the description files exist, the flags fit together."""
    kind, options = grouping(config), config.options(DVPOptions)
    if config.mapping != "identity":
        raise UserError(f"--mapping {config.mapping} does not apply to DVP: its descriptions reach the classes through its reweighting matrix")
    DVP_PROMPT_CHOICES.resolve(config.prompt)  # a config written by hand passes the command line's check too
    prompt_options(config, CLIP)
    if kind == "cause" and options.clusters is not None:
        raise UserError("--clusters applies to --grouping cluster")
    m, k = options.descriptions_per_class, options.prm_top_k
    n = m * NUM_CAUSES if kind == "cause" else m
    if k > n:
        raise UserError(f"--prm-top-k {k} must be at most the {n} descriptions per class")
    for path in description_files(config):
        if not path.is_file():
            raise UserError(missing_file_message(config, path))


def grouped_descriptions(config: RunConfig, clip: LoadedCLIP, class_names: list[str], runtime: Runtime) -> tuple[torch.Tensor, torch.Tensor, list[str], dict]:
    """The ``[C * n, D]`` description embeddings (class-major), their ``[C * n]`` groups, their names, and what config.json records."""
    m, files = config.options(DVPOptions).descriptions_per_class, description_files(config)
    if grouping(config) == "cause":  # class c: m sentences of cause 1, then of cause 2, ...
        drawn = [draw_attributes(path, class_names, m, init_generator(config.seed, f"dvp/cause_{i + 1}"), f"cause {i + 1}") for i, path in enumerate(files)]
        texts = [s for c in range(len(class_names)) for per_file in drawn for s in per_file[c]]
        groups = torch.arange(len(files)).repeat_interleave(m).repeat(len(class_names))
    else:
        drawn = draw_attributes(files[0], class_names, m, init_generator(config.seed, "dvp/descriptive"), "descriptive")
        texts = [s for sentences in drawn for s in sentences]
    embeddings = text_embeddings(clip, ["{}"], texts, device=runtime.device, progress=runtime.is_main)[0]  # no template
    if grouping(config) == "cluster":
        k = int(config.options(DVPOptions).clusters)
        if k > len(texts):
            raise UserError(f"--clusters {k} exceeds the {len(texts)} descriptions ({len(class_names)} classes x {m})")
        groups = cluster_descriptions(embeddings, k, seed=KMEANS_SEED)
    n = len(texts) // len(class_names)
    names = [f"{class_names[j // n]} [prompt {int(g) + 1}]: {text}" for j, (g, text) in enumerate(zip(groups, texts))]
    info = {
        "description_files": [str(p) for p in files],
        "description_files_sha256": [file_digest(p) for p in files],
        "descriptions_drawn_sha256": hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16],
        "descriptions_per_class": n,
        "descriptions_per_prompt": torch.bincount(groups).tolist(),
    }
    return embeddings, groups, names, info


def build_prompts(config: RunConfig, clip: LoadedCLIP, count: int) -> list[torch.nn.Module]:
    """The ``count`` prompts of ``--prompt`` (the one prompt registry), each from its own initial-value generator."""
    return [clip_prompt(config, clip, init_generator(config.seed, f"prompt/{i}")) for i in range(count)]


class PRMEstimation(EpochHook):
    """The PRM re-estimated after every epoch from that epoch's training scores; the first epoch only estimates.

    During an epoch, every training chunk's description scores (the step's source outputs) add to
    one count per description (:func:`~models.clip.dvp.count_top_k`); after it, the counts (summed
    over ranks) become the new PRM. Epoch 0 computes its steps like any other (its loss is reported)
    but :meth:`hold_prompts`, an optimizer hook, drops the gradients before the optimizer sees them,
    so no prompt, momentum or weight decay moves. Mid-epoch counts go into a checkpoint written on
    a stop request; the PRM itself is in the model's state.
    """

    name = "prm"

    def __init__(self, top_k: int) -> None:
        self.top_k = top_k
        self.estimate_only = False
        self.counts: torch.Tensor | None = None
        self._model: DecoupledVisualPrompting | None = None

    def start_training(self, ctx: EpochContext, epoch: int) -> None:
        self._model, self.estimate_only = ctx.model, epoch == 0
        self.counts = torch.zeros(ctx.model.label_mapping.num_source, device=ctx.runtime.device, dtype=torch.float64)

    def resume_training(self, ctx: EpochContext, epoch: int) -> None:
        self._model, self.estimate_only = ctx.model, epoch == 0

    def before_epoch(self, ctx: EpochContext, epoch: int) -> dict[str, Any]:
        return {"prm_estimate_only": epoch == 0}

    def on_chunk(self, output: StepOutput, labels: torch.Tensor) -> None:
        count_top_k(self.counts, output.source.detach().float(), labels, self._model.descriptions_per_class, self.top_k)

    def end_training(self, ctx: EpochContext, epoch: int) -> None:
        ctx.model.estimate_prm(ctx.runtime.all_reduce_sum(self.counts))
        self.counts, self.estimate_only = None, False

    def hold_prompts(self, optimizer: torch.optim.Optimizer) -> None:
        """In the estimate-only epoch: no gradient reaches the optimizer."""
        if self.estimate_only:
            for group in optimizer.param_groups:
                for parameter in group["params"]:
                    parameter.grad = None

    def state_dict(self) -> dict[str, Any]:
        return {} if self.counts is None else {"prm_counts": self.counts.cpu()}

    def load_state_dict(self, checkpoint: dict[str, Any], device: torch.device) -> None:
        counts = checkpoint.get("prm_counts")
        self.counts = None if counts is None else counts.to(device)


def build_dvp(config: RunConfig, data: TargetData, runtime: Runtime) -> Experiment:
    clip = clip_from_config(config)
    class_names = list(data.class_names)
    embeddings, groups, names, info = grouped_descriptions(config, clip, class_names, runtime)
    prompts = build_prompts(config, clip, int(groups.max()) + 1)
    side = type(prompts[0]).input_side(clip.image_size, prompts[0].options)
    model = DecoupledVisualPrompting(
        CLIPPreprocess(side, clip.mean, clip.std), prompts, clip.model.visual, clip.model.logit_scale, embeddings, groups, len(class_names),
        channels_last=config.channels_last, recompute=config.recompute,
    )  # fmt: skip
    top_k = config.options(DVPOptions).prm_top_k
    hook = PRMEstimation(top_k)
    info.update(clip_model=clip.name, clip_weights=clip.weights_id, grouping=grouping(config), num_prompts=len(prompts), prm_top_k=top_k,
                similarity_scale=float(model.network.scale), label_mapping="prm", augment=AUGMENT)  # fmt: skip
    return Experiment(model=model, source_names=names, train_augment=build_recipe(AUGMENT, data.image_size, side), info=info,
                      hooks=[MappingRefit(), hook], optimizer_hooks=[hook.hold_prompts])  # fmt: skip


register_family(
    "dvp",
    build_dvp,
    options=(CLIPModelOptions, DVPOptions),
    networks=CLIP_NETWORKS,
    prompts=DVP_PROMPT_CHOICES,
    check=check_dvp,
    complete=complete_dvp,
    input_size=clip_input_side,
    weights=clip_weights,
    cuda_precision="fp16",
    augment_recipe=lambda config: AUGMENT,
)

# DVP's recipe is AttrVR's (the same authors' setup: 16 shots, each prompt the image at 192 inside a
# 16-px trainable frame, SGD lr 40, momentum 0.9, cosine decay over all steps, 200 epochs, batch 64)
# on CLIP ViT-B/16; the first epoch only estimates the PRM, training views are random resized crops and flips.
register_method(MethodSpec(
    METHOD,
    "dvp",
    "DVP: several CLIP visual prompts, each scored against its own group of class descriptions, reweighted per class (Cai et al., ICML 2025).",
    {**get_method(ATTRVR).defaults, "network": "ViT-B/16"},
))  # fmt: skip
