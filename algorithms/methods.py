"""Methods as configuration: each is a model family plus the paper's default flags.

A *family* builds the :class:`~algorithms.engine.Experiment` (which parts train, how inputs are
prepared); a *method* names a family and its defaults. Adding a method is a few lines here and a
thin script in ``experiments/``; adding a family is one builder function.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from algorithms.config import RunConfig
from algorithms.engine import Experiment
from algorithms.errors import UserError
from algorithms.label_mapping import build_mapping
from algorithms.runtime import Runtime
from data.registry import TargetData
from models.networks import load_network
from models.prompts import PROMPTS
from models.reprogrammer import ReprogrammingModel

FamilyBuilder = Callable[[RunConfig, TargetData, Runtime], Experiment]


@dataclass(frozen=True)
class Family:
    build: FamilyBuilder
    add_arguments: Callable | None = None  # extra flags, stored in RunConfig.extra


@dataclass(frozen=True)
class MethodSpec:
    name: str
    family: str
    description: str
    defaults: dict = field(default_factory=dict)


FAMILIES: dict[str, Family] = {}
METHODS: dict[str, MethodSpec] = {}


def register_family(name: str, build: FamilyBuilder, add_arguments: Callable | None = None) -> None:
    FAMILIES[name] = Family(build, add_arguments)


def register_method(spec: MethodSpec) -> MethodSpec:
    METHODS[spec.name] = spec
    return spec


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}")
    return METHODS[name]


# ---------------------------------------------------------------------------------------------
# Visual prompting of a CNN: train the prompt, map labels


def build_visual_prompt(config: RunConfig, data: TargetData, runtime: Runtime) -> Experiment:
    net = load_network(config.network, config.weights)
    if config.prompt not in PROMPTS:
        raise UserError(f"unknown prompt {config.prompt!r} for CNN methods; choose from {', '.join(sorted(PROMPTS))}")
    prompt = PROMPTS[config.prompt](
        data.image_size, net.mean, net.std, out_size=net.input_size, init=config.prompt_init, image_mask=data.prompt_mask
    )
    mapping = build_mapping(
        config.mapping, net.num_classes, data.num_classes, interval=config.mapping_interval, seed=config.seed
    )
    model = ReprogrammingModel(prompt, net.model, mapping, channels_last=config.channels_last, fold_batch_norm=config.fold_bn)
    return Experiment(model=model, source_names=net.class_names)


register_family("visual_prompt", build_visual_prompt)

_VP_DEFAULTS = {"epochs": 200, "lr": 0.01, "optimizer": "adam", "scheduler": "multistep", "milestones": [0.5, 0.72]}
register_method(MethodSpec("ilm_vp", "visual_prompt", "ILM-VP: visual prompt with the label mapping refit every epoch (Chen et al., CVPR 2023).", {**_VP_DEFAULTS, "mapping": "ilm"}))  # fmt: skip
register_method(MethodSpec("flm_vp", "visual_prompt", "FLM-VP: visual prompt with the frequency label mapping computed once, before training.", {**_VP_DEFAULTS, "mapping": "flm"}))  # fmt: skip
register_method(MethodSpec("rlm_vp", "visual_prompt", "RLM-VP: visual prompt with a seeded random one-to-one label mapping.", {**_VP_DEFAULTS, "mapping": "rlm"}))  # fmt: skip
