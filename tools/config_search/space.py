"""The search space of ``tools/search.py``, built from the registries, and one trial's run.

An axis lists the values a trial may take; every value is a registered name (prompt, mapping,
augmentation) or a number, so a prompt, mapping or recipe registered tomorrow is searched
without editing this file. A trial is turned into an ordinary command of a method script: the
*recipe* of a prompt is the method registered with that prompt (and, where one exists, that
mapping) as its default, so a prompt with its own method (its optimizer, learning rate,
augmentation) trains with that method's defaults; the learning rate, where searched, is a
log-uniform factor around that recipe's default rate, so a prompt trained by SGD at lr 40 and
one trained by Adam at 0.01 share one axis. A mapping with a learning rate of its own (``head``'s
``--head-lr``, declared in its options) gets an axis of its own the same way, around its recipe's rate.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from algorithms.mappings import MAPPING_CHOICES, reads_features
from algorithms.mappings.base import mapping_options, maps_fewer_targets
from algorithms.methods import FAMILIES, METHODS, MethodSpec
from algorithms.methods.visual_prompt import AUGMENT_CHOICES
from algorithms.settings import RunConfig
from common.errors import UserError
from common.options import flag_of, option_fields, options_from
from data.augment_recipes import NONE
from models.prompts import PROMPT_CHOICES, prompts_reading

OWN_SIZE = "own"  # --input-size not given: the image keeps its own size
DEFAULT_INPUT_SIZES = (OWN_SIZE, "128", "160", "192")  # AutoVP's input scaling (Tsao et al., ICLR 2024)
DEFAULT_SCHEDULERS = ("multistep", "cosine")
DEFAULT_LR_FACTOR = 3.0  # the lr axis spans [default / F, default * F] of the prompt's recipe

SPACES = {
    "autovp": "AutoVP's axes (Tsao et al., ICLR 2024): prompt, input scale (pad), label mapping, augmentation; the recipe's lr",
    "full": "autovp plus the learning rate (log-uniform around each prompt's recipe) and the lr schedule",
}


def cnn_prompt_methods() -> list[MethodSpec]:
    """Methods of families that take the CNN ``--prompt`` registry, in registration order."""
    return [m for m in METHODS.values() if FAMILIES[m.family].prompts is PROMPT_CHOICES]


def recipe(prompt: str, mapping: str) -> MethodSpec:
    """The method whose defaults train ``prompt``: one with that default prompt (the default
    ``pad`` when a method names none), preferring one with ``mapping`` as its default; else the
    first registered prompt method (ILM-VP), which takes any ``--prompt``. A method built around a
    mapping that reads features (``head_vp``: its lr and recipe are the head's) is the recipe of
    that mapping's trials only."""
    base = RunConfig(method="")
    methods = cnn_prompt_methods()
    if not methods:
        raise UserError("no method trains a CNN visual prompt")
    own_mapping = [m for m in methods if not reads_features(m.defaults.get("mapping", base.mapping)) or m.defaults.get("mapping") == mapping]
    own = [m for m in own_mapping if m.defaults.get("prompt", base.prompt) == prompt]
    if not own:  # a prompt without a method of its own trains with the generic recipe
        own = [m for m in own_mapping if "prompt" not in m.defaults]
    candidates = own or methods
    return next((m for m in candidates if m.defaults.get("mapping", base.mapping) == mapping), candidates[0])


def recipe_lr(method: MethodSpec) -> float:
    return float(method.defaults.get("lr", RunConfig(method="").lr))


def mapping_rates(mapping: str, method: MethodSpec) -> list[tuple[str, str, float]]:
    """The learning rates ``mapping`` declares among its options (an option named ``*_lr`` with a
    number for default: ``head``'s ``--head-lr``), as (option, flag, the rate of ``method``'s recipe)."""
    cls = mapping_options(mapping)
    if cls is None:
        return []
    defaults = options_from(cls, method.defaults)
    rates = [(f.name, getattr(defaults, f.name)) for f, _meta in option_fields(cls) if f.name.endswith("_lr")]
    return [(name, flag_of(cls, name), float(rate)) for name, rate in rates if isinstance(rate, (int, float))]


@dataclass(frozen=True)
class Space:
    """The axes; ``lr_factor`` None: the recipe's own learning rate (not searched)."""

    name: str
    prompts: tuple[str, ...]
    mappings: tuple[str, ...]
    augments: tuple[str, ...]
    input_sizes: tuple[str, ...]
    schedulers: tuple[str, ...] = ()  # empty: the recipe's schedule
    lr_factor: float | None = None

    def check(self) -> None:
        """An empty axis is an error naming its flag."""
        for flag, values in (("--prompts", self.prompts), ("--mappings", self.mappings), ("--augments", self.augments)):
            if not values:
                raise UserError(f"the search space is empty: {flag} lists no value")
        if any(p in prompts_reading("input_size") for p in self.prompts) and not self.input_sizes:
            raise UserError("the search space is empty: --input-sizes lists no value")
        if self.lr_factor is not None and not self.lr_factor >= 1:
            raise UserError(f"--lr-factor must be at least 1, got {self.lr_factor}")

    def describe(self) -> dict:
        return {
            "space": self.name, "prompts": list(self.prompts), "mappings": list(self.mappings), "augments": list(self.augments),
            "input_sizes": list(self.input_sizes), "schedulers": list(self.schedulers), "lr_factor": self.lr_factor,
        }  # fmt: skip


def input_size_type(text: str) -> str:
    if text == OWN_SIZE:
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise UserError(f"--input-sizes takes positive integers or {OWN_SIZE!r}, got {text!r}")
    return str(value)


def reprogramming_mappings() -> list[str]:
    """Every registered mapping that maps an ImageNet network's 1000 labels to fewer classes (not ``identity``)."""
    return [name for name in MAPPING_CHOICES.names() if maps_fewer_targets(name)]


def build_space(name: str, prompts=None, mappings=None, augments=None, input_sizes=None, schedulers=None, lr_factor=None) -> Space:
    """A preset with per-axis overrides (None: the preset's axis)."""
    if name not in SPACES:
        raise UserError(f"unknown space {name!r}; choose from {', '.join(SPACES)}")
    full = name == "full"
    space = Space(
        name,
        tuple(PROMPT_CHOICES.resolve(p) for p in (PROMPT_CHOICES.names() if prompts is None else prompts)),
        tuple(MAPPING_CHOICES.resolve(m) for m in (reprogramming_mappings() if mappings is None else mappings)),
        tuple(_augment(a) for a in (AUGMENT_CHOICES if augments is None else augments)),
        tuple(input_size_type(s) for s in (DEFAULT_INPUT_SIZES if input_sizes is None else input_sizes)),
        tuple(schedulers if schedulers is not None else (DEFAULT_SCHEDULERS if full else ())),
        (lr_factor if lr_factor is not None else DEFAULT_LR_FACTOR) if full or lr_factor is not None else None,
    )
    space.check()
    return space


def _augment(name: str) -> str:
    """An ``--augments`` value: every spelling the method scripts' ``--augment`` takes (a recipe of
    :mod:`data.augment_recipes`, steps joined by ``+``, or the per-prompt ``crop_flip``/``trivialaugment``)."""
    if name in AUGMENT_CHOICES:
        return name
    from data.augment_recipes import resolve_recipe

    try:
        resolve_recipe(name, dict.fromkeys((a for a in AUGMENT_CHOICES if a != NONE), NONE))
    except UserError as exc:
        raise UserError(f"--augments: {exc}") from None
    return name


@dataclass(frozen=True)
class TrialPlan:
    """What one trial runs: the method script and the flags its parameters set."""

    method: str
    flags: tuple[str, ...]
    params: dict = field(default_factory=dict)


def suggest(trial, space: Space) -> TrialPlan:
    """Draw one configuration with Optuna's define-by-run API (``input_size`` only for prompts
    that read it, so the sampler never spends trials on a value without effect)."""
    prompt = trial.suggest_categorical("prompt", list(space.prompts))
    mapping = trial.suggest_categorical("mapping", list(space.mappings))
    augment = trial.suggest_categorical("augment", list(space.augments))
    flags = ["--prompt", prompt, "--mapping", mapping, "--augment", augment]
    if prompt in prompts_reading("input_size"):
        size = trial.suggest_categorical("input_size", list(space.input_sizes))
        if size != OWN_SIZE:
            flags += ["--input-size", size]
    if space.schedulers:
        flags += ["--scheduler", trial.suggest_categorical("scheduler", list(space.schedulers))]
    method = recipe(prompt, mapping)
    if space.lr_factor is not None:
        factor = trial.suggest_float("lr_scale", 1 / space.lr_factor, space.lr_factor, log=True)
        flags += ["--lr", format_lr(recipe_lr(method) * factor)]
        for name, flag, rate in mapping_rates(mapping, method):
            scale = trial.suggest_float(f"{name}_scale", 1 / space.lr_factor, space.lr_factor, log=True)
            flags += [flag, format_lr(rate * scale)]
    return TrialPlan(method.name, tuple(flags), dict(trial.params))


def format_lr(value: float) -> str:
    """Four significant digits: a readable command, and the value the run stores."""
    return repr(float(f"{value:.4g}"))
