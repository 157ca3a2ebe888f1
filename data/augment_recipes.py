"""The augmentation vocabulary of ``--augment``: one registered step per recipe, named for what it does.

A value is ``none`` or steps joined by ``+``, applied left to right, each continuing every
sample's random stream (:class:`~data.augment_draws.AugmentDraws`): ``trivialaugment_wide+
pad_crop_flip`` is TrivialAugment then the CIFAR crop; ACAVP's training recipe (resize, flip,
random crop, then TrivialAugment) is ``resize32_crop_flip+trivialaugment_wide`` or, with another
resize margin, one more :func:`register_recipe` line. Prompts and the baselines read the same
vocabulary; the spellings of earlier versions stay accepted: ``ALIASES`` for single steps, and
per caller the whole-value spellings ``crop_flip`` and ``trivialaugment``, whose meaning depended
on the prompt or method (``legacy`` in :func:`resolve_recipe`).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from common.choices import Choices
from common.errors import UserError
from data.augment import RESIZE_MARGIN_BLM, RESIZE_MARGIN_SMM, Augment, compose, pad_crop_flip, resize_crop_recipe, resized_crop_flip
from data.trivialaugment import trivialaugment

NONE = "none"
CHAIN = "+"


@dataclass(frozen=True)
class Recipe:
    build: Callable[..., Augment] | None  # (image_size, out_size) -> augment; None: no augmentation
    description: str
    # its output has the network's input size: only prompts taking full-size images can follow it
    resizes: bool = False


RECIPES: dict[str, Recipe] = {}
# one step's spelling in earlier versions -> its name (the baselines' --train-augment values)
ALIASES: dict[str, str] = {}


def register_recipe(name: str, build: Callable[..., Augment] | None, description: str, *, resizes: bool = False, aliases: tuple[str, ...] = ()) -> None:
    """One step of the vocabulary; ``build(image_size, out_size)`` gives the ``train_augment`` callable."""
    if CHAIN in name:
        raise ValueError(f"a recipe name cannot contain {CHAIN!r}: {name!r}")
    RECIPES[name] = Recipe(build, description, resizes)
    ALIASES.update({alias: name for alias in aliases})


register_recipe(NONE, None, "no augmentation")
register_recipe("pad_crop_flip", pad_crop_flip,
                "zero-pad 4 px per 32 of the image side, random crop back to the image size, horizontal flip with p 1/2 (the CIFAR recipe)")  # fmt: skip
register_recipe("resize4_crop", resize_crop_recipe(RESIZE_MARGIN_BLM, flip=False),
                "resize to the network input + 4 px, random crop of the input size, no flip (BLM's watermark recipe)",
                resizes=True, aliases=("resize_crop",))  # fmt: skip
register_recipe("resize32_crop_flip", resize_crop_recipe(RESIZE_MARGIN_SMM, flip=True),
                "resize to the network input + 32 px, random crop of the input size, horizontal flip (SMM's recipe)",
                resizes=True, aliases=("smm_crop_flip",))  # fmt: skip
register_recipe("random_resized_crop_flip", resized_crop_flip,
                "random resized crop (area 0.08-1 of the image, aspect 3/4-4/3) at the image's own size, horizontal flip (the ImageNet recipe)",
                aliases=("resized_crop_flip",))  # fmt: skip
register_recipe("trivialaugment_wide", trivialaugment,
                "TrivialAugment: one op of torchvision's TrivialAugmentWide and one of its 31 magnitudes per image",
                aliases=("trivialaugment",))  # fmt: skip

RECIPE_CHOICES = Choices("augmentation", lambda: {n: r.description for n, r in RECIPES.items()}, lambda: ALIASES)


def recipe_steps(chain: str) -> list[str]:
    """The registered steps of a canonical value (none: no step)."""
    return [] if chain == NONE else chain.split(CHAIN)


def resolve_recipe(spelling: str, legacy: Mapping[str, str] | None = None) -> str:
    """The canonical value for ``spelling``: ``legacy`` maps a caller's whole-value spellings of
    earlier versions (``crop_flip``: the prompt's paper recipe) to their values; otherwise each
    ``+``-joined step is a registered name or alias. A bad value is one :class:`UserError`."""
    if legacy and spelling in legacy:
        return legacy[spelling]
    steps = spelling.split(CHAIN)
    try:
        names = [RECIPE_CHOICES.resolve(step) for step in steps]
    except UserError:
        listed = ", ".join([*RECIPE_CHOICES.names(), *sorted(legacy or ())])
        raise UserError(f"unknown --augment {spelling!r}; choose from {listed} (steps joined by {CHAIN})") from None
    if NONE in names and len(names) > 1:
        raise UserError(f"--augment {spelling!r}: {NONE} cannot be chained with other steps")
    return CHAIN.join(names)


def recipe_resizes(chain: str) -> bool:
    """Whether the recipe's output has the network's input size rather than the image's."""
    return any(RECIPES[step].resizes for step in recipe_steps(chain))


def build_recipe(chain: str, image_size: tuple[int, int], out_size: int | None = None) -> Augment | None:
    """The ``train_augment`` callable of a canonical value for images of ``image_size`` feeding a
    network whose input side is ``out_size`` (None for ``none``)."""
    return compose(*(RECIPES[step].build(image_size, out_size) for step in recipe_steps(chain)))


def recipe_help(summary: str, legacy: str) -> str:
    """``--augment``'s help: ``summary``, one line per step, how to chain, the caller's old spellings."""
    return RECIPE_CHOICES.help(summary) + f"\n  steps joined by {CHAIN} apply left to right (e.g. trivialaugment_wide+pad_crop_flip)\n  {legacy}"
