"""Methods as configuration: each is a model family plus the paper's default flags.

A *family* builds the :class:`~algorithms.engine.Experiment` (which parts train, how inputs are
prepared) that the engine trains, or, for a method with no training epochs, solves the task
directly; a *method* names a family and its defaults. Family modules register themselves here;
``algorithms/methods/__init__.py`` lists them, and this module imports none of them.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from algorithms.engine import Experiment
from algorithms.outputs import RunOutputs
from algorithms.runtime import Runtime
from algorithms.settings import RunConfig
from common.choices import Choices
from common.errors import UserError
from common.options import Options, distinct
from data.registry import TargetData
from models.networks import NETWORKS, resolve_weights
from models.prompts.registry import option_classes as prompt_option_classes

FamilyBuilder = Callable[[RunConfig, TargetData, Runtime], Experiment]
# a method without training epochs: computes and writes its results itself, returns results.json's content
Solver = Callable[[RunConfig, TargetData, Runtime, RunOutputs], dict]
# whether, with these settings, what the family trains depends on how a batch is split into chunks
BatchRule = Callable[[RunConfig], bool]


@dataclass(frozen=True)
class Family:
    build: FamilyBuilder | None = None  # an Experiment for the engine's epochs
    add_arguments: Callable | None = None  # other spellings of its options' flags (argparse), after they are added
    solve: Solver | None = None  # instead of ``build``: the whole fit in one call
    networks: Choices = NETWORKS  # what --network accepts (checked while parsing)
    prompts: Choices | None = None  # what --prompt accepts; None: the family takes no prompt flags
    check: Callable[[RunConfig], None] | None = None  # flag combinations, checked before any data loads
    # the network's input side (e.g. CLIP's 224), where images are decoded by ``--decode crop``
    # unless ``--image-size`` is given; None: the dataset's default size
    input_size: Callable[[RunConfig], int] | None = None
    # what ``--precision auto`` trains in on CUDA: the reference code's choice for the family
    cuda_precision: str = "bf16"
    # None: the trained part treats every sample alone, so --micro-batch changes nothing computed
    batch_dependent: BatchRule | None = None
    # finds (or downloads) the network's weights without building it: the runner calls it before
    # any image is decoded, so a missing file is reported in seconds
    weights: Callable[[RunConfig], None] | None = None
    # fills settings that follow from other flags, before the run's identity is computed
    complete: Callable[[RunConfig], None] | None = None
    # the run's training augmentation as a canonical recipe (data.augment_recipes); None: never augments
    augment_recipe: Callable[[RunConfig], str] | None = None
    # its options (common.options dataclasses): the family's own, a mapping's it offers (HeadOptions)
    options: tuple[type[Options], ...] = ()

    def option_classes(self) -> list[type[Options]]:
        """Every options class whose flags its scripts take: its own, then those of the prompts its ``--prompt`` lists."""
        return distinct([*self.options, *(prompt_option_classes(self.prompts.names()) if self.prompts is not None else ())])

    @property
    def trains_epochs(self) -> bool:
        return self.solve is None


@dataclass(frozen=True)
class MethodSpec:
    name: str
    family: str
    description: str
    defaults: dict = field(default_factory=dict)


FAMILIES: dict[str, Family] = {}
METHODS: dict[str, MethodSpec] = {}


def register_family(
    name: str,
    build: FamilyBuilder | None = None,
    add_arguments: Callable | None = None,
    *,
    solve: Solver | None = None,
    networks: Choices = NETWORKS,
    prompts: Choices | None = None,
    check: Callable[[RunConfig], None] | None = None,
    input_size: Callable[[RunConfig], int] | None = None,
    cuda_precision: str = "bf16",
    batch_dependent: BatchRule | None = None,
    weights: Callable[[RunConfig], None] | None = None,
    complete: Callable[[RunConfig], None] | None = None,
    augment_recipe: Callable[[RunConfig], str] | None = None,
    options: tuple[type[Options], ...] = (),
) -> None:
    """``batch_dependent``: a family whose trained part uses batch statistics (batch norms in
    training mode) or draws something random per forward call must say so, since a training step
    computed in chunks (``--micro-batch``) then gives another result."""
    if (build is None) == (solve is None):
        raise ValueError(f"family {name!r} needs exactly one of build and solve")
    if weights is None and networks is NETWORKS:
        weights = network_weights
    FAMILIES[name] = Family(
        build, add_arguments, solve, networks, prompts, check, input_size, cuda_precision, batch_dependent, weights, complete, augment_recipe, tuple(options)
    )


def network_weights(config: RunConfig) -> None:
    """The weights of a ``--network`` of :data:`~models.networks.NETWORKS` (or ``--weights``), found or downloaded."""
    resolve_weights(config.network, config.weights)


def register_method(spec: MethodSpec) -> MethodSpec:
    METHODS[spec.name] = spec
    return spec


def resolve_settings(config: RunConfig) -> RunConfig:
    """``config`` with what its family says about these settings filled into ``resolved``.

    Done once, while parsing, so that a run's folder name and behaviour depend on its settings
    alone, never on which modules happened to be imported.
    """
    family = FAMILIES[get_method(config.method).family]
    rule, augment = family.batch_dependent, family.augment_recipe
    resolved = {
        "batch_dependent": bool(rule is not None and rule(config)),
        "augment": augment(config) if augment is not None else "none",  # a bad --augment: one UserError
    }
    return replace(config, resolved={**config.resolved, **resolved})


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}")
    return METHODS[name]


# every registered method with its description (the sweep and table tools' ``--methods``)
METHOD_CHOICES = Choices("method", lambda: {name: spec.description for name, spec in METHODS.items()})
