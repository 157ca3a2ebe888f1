"""The named grids of ``tools/reproduce.py``: the paper's tables and figures, and comparison presets of configurations."""
from __future__ import annotations

from dataclasses import dataclass, field

from common.errors import UserError

# The 13 datasets of Table 1 (Chen et al., CVPR 2023), in the paper's order.
TABLE1_DATASETS = (
    "flowers102", "dtd", "ucf101", "food101", "gtsrb", "eurosat", "oxfordpets",
    "stanfordcars", "sun397", "cifar10", "cifar100", "svhn", "abide",
)  # fmt: skip
TABLE1_NETWORKS = ("resnet18", "resnet50", "instagram")
CNN_METHODS = ("ilm_vp", "flm_vp", "rlm_vp", "linear_probing", "full_finetune")
# The CLIP table of the same paper (ViT-B/32): VP + one template vs VP + templates chosen by ILM.
CLIP_DATASETS = (
    "flowers102", "dtd", "ucf101", "food101", "svhn", "eurosat", "stanfordcars",
    "sun397", "cifar10", "imagenet-r", "imagenet-sketch",
)  # fmt: skip
CLIP_METHODS = ("ilm_tp_vp", "single_tp_vp")
# The paper reports mean and std over 3 runs without naming the seeds; these are ours.
PAPER_SEEDS = (1, 2, 3)


@dataclass(frozen=True)
class Variant:
    """One configuration of a comparison: a label, the method script and its flags."""

    label: str
    method: str
    flags: tuple[str, ...] = ()
    reference: bool = False  # a reference line (linear probing), not a contender


@dataclass(frozen=True)
class Preset:
    description: str
    datasets: tuple[str, ...]
    networks: tuple[str | None, ...]  # None: the method picks its own model (CLIP)
    methods: tuple[str, ...] = ()
    seeds: tuple[int, ...] = PAPER_SEEDS
    train_fractions: tuple[float | None, ...] = (None,)
    only_networks: dict[str, tuple[str, ...]] = field(default_factory=dict)  # method -> allowed networks
    # a comparison: configurations (instead of methods) on every dataset
    variants: tuple[Variant, ...] = ()
    # dataset label -> its flags ("{data}" stands for the sweep's --data-path); default --dataset LABEL
    dataset_flags: dict[str, tuple[str, ...]] = field(default_factory=dict)
    common_flags: tuple[str, ...] = ()  # every run's flags, before the variant's own
    seed_subsets: bool = False  # --subset-seed follows --seed (the few-shot protocol redraws the shots per seed)

    def variant(self, label: str) -> Variant:
        for v in self.variants:
            if v.label == label:
                return v
        raise UserError(f"preset has no variant {label!r}; choose from {', '.join(v.label for v in self.variants)}")


# The comparison of docs/beyond.md: EfficientNet-Lite0 (the ImageNet network with weights offline)
# on a class-balanced CIFAR-10 subset (1000 train, 500 test, 500 validation) and on DTD-10 at
# 128 px, 5 epochs of the paper's schedule, batch 64; every prompt also with TrivialAugment (+ta).
# About 45 minutes per seed on a 2-core CPU (30 runs of 1-2 minutes); the few-shot preset about 5 minutes.
BEYOND_DATASETS = {
    "cifar10": ("--dataset", "cifar10", "--max-train-samples", "1000", "--max-test-samples", "500"),
    "dtd10": ("--dataset", "folder", "--data-path", "{data}/dtd10", "--image-size", "128"),
}
BEYOND_COMMON = ("--epochs", "5", "--batch-size", "64", "--val-fraction", "0.1")
BEYOND_PROMPTS = (
    Variant("pad+ilm", "ilm_vp", ("--prompt", "pad")),
    Variant("pad+blmplus", "blmplus_vp", ("--prompt", "pad")),
    Variant("watermark+ilm", "ilm_vp", ("--prompt", "watermark")),
    Variant("smm+ilm", "smm_vp"),
    Variant("smm+blmplus", "blmplus_vp", ("--prompt", "smm")),
    Variant("lowrank+ilm", "ilm_vp", ("--prompt", "lowrank")),
    Variant("pad@192+ilm", "ilm_vp", ("--prompt", "pad", "--input-size", "192")),
)
# ACAVP (acavp_vp: SGD, cosine, FLM) with TrivialAugment (its default) and with the same crop and
# flip without it
BEYOND_ACAVP = (
    Variant("acavp+flm", "acavp_vp", ("--augment", "crop_flip")),
    Variant("acavp+flm+ta", "acavp_vp", ("--augment", "trivialaugment")),
)
BEYOND_VARIANTS = (
    *BEYOND_PROMPTS,
    *(Variant(f"{v.label}+ta", v.method, (*v.flags, "--augment", "trivialaugment")) for v in BEYOND_PROMPTS),
    *BEYOND_ACAVP,
    Variant("linear_probing", "linear_probing", reference=True),
)
BEYOND_BY_LABEL = {v.label: v for v in BEYOND_VARIANTS}
# The few-shot protocol on DTD-10 for the comparison's best configuration (by the mean
# validation-selected accuracy on DTD-10 over the three seeds), beside ILM-VP and linear probing.
BEYOND_FEWSHOT_BEST = "pad+blmplus"


PRESETS: dict[str, Preset] = {
    "table1": Preset(
        "Table 1: 13 datasets x ResNet-18/ResNet-50/Instagram ResNeXt x ILM/FLM/RLM-VP, LP, FF x 3 seeds "
        "(RLM-VP on ResNet-18 only, as in the paper)",
        TABLE1_DATASETS, TABLE1_NETWORKS, CNN_METHODS, only_networks={"rlm_vp": ("resnet18",)},
    ),  # fmt: skip
    "table1-resnet18": Preset("Table 1, ResNet-18 columns only", TABLE1_DATASETS, ("resnet18",), CNN_METHODS),
    "clip": Preset("CLIP table: 11 datasets x ILM-TP-VP, single-template TP-VP x 3 seeds", CLIP_DATASETS, (None,), CLIP_METHODS),
    "fraction": Preset(
        "Figure 3: ILM-VP vs FLM-VP on GTSRB (ResNet-18) against the fraction of training data",
        ("gtsrb",), ("resnet18",), ("ilm_vp", "flm_vp"), train_fractions=(0.1, 0.2, 0.4, 0.6, 0.8, 1.0),
    ),  # fmt: skip
    "beyond": Preset(
        "docs/beyond.md: pad/watermark/SMM/low-rank/rescaled prompts with ILM and BLM+, ACAVP, TrivialAugment, linear probing; "
        "EfficientNet-Lite0 on CIFAR-10 (1000/500) and DTD-10 (128 px), 5 epochs x 3 seeds",
        tuple(BEYOND_DATASETS), ("efficientnet_lite0",), variants=BEYOND_VARIANTS,
        dataset_flags=BEYOND_DATASETS, common_flags=BEYOND_COMMON,
    ),  # fmt: skip
    "beyond-fewshot": Preset(
        f"docs/beyond.md: 16 shots per class on DTD-10, redrawn with each seed, for {BEYOND_FEWSHOT_BEST} beside pad+ilm and linear probing",
        ("dtd10",), ("efficientnet_lite0",),
        variants=tuple(BEYOND_BY_LABEL[label] for label in dict.fromkeys((BEYOND_FEWSHOT_BEST, "pad+ilm", "linear_probing"))),
        dataset_flags=BEYOND_DATASETS, common_flags=(*BEYOND_COMMON, "--shots", "16"), seed_subsets=True,
    ),  # fmt: skip
}


