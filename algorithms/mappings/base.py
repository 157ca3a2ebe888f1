"""Output label mappings: the interface, the statistics they are fitted from, and the registry.

Every mapping is a small ``nn.Module`` with one interface, so the engine treats them alike:

* ``forward(source_logits [B, S]) -> target_logits [B, K]``
* ``refresh_due(epoch) -> bool``: whether the engine must gather statistics and call ``fit`` before
  this epoch (ILM: every ``interval`` epochs; FLM: only before the first; RLM: never).
* ``source_statistic(source_logits) -> [B, S]``: each sample's contribution to the statistics
  matrix (one-hot top-1 prediction for the frequency mappings); the engine sums it per target
  class into ``stats [S, K]``, on the device, across ranks.
* ``fit(stats)``: set the mapping from the summed matrix.
* ``describe(source_names, target_names)``: a JSON-ready, human-readable view.
* ``reads_features``: False for mappings over the source logits; True for one that reads the
  network's penultimate features instead (``head``): the family then builds the network without
  its final classifier layer and passes the feature size as ``num_source``.

A mapping module registers a factory under its ``--mapping`` name with :func:`register_mapping`;
``algorithms/mappings/__init__.py`` lists the modules. This module imports none of them.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import torch
from torch import nn

from common.choices import Choices, first_line
from common.errors import UserError
from common.options import Options, flag_of, given

# ---------------------------------------------------------------------------------------------
# Statistics


def frequency_matrix(source_pred: torch.Tensor, target: torch.Tensor, num_source: int, num_target: int) -> torch.Tensor:
    """``counts[s, t]`` = number of samples of target class ``t`` whose top-1 source class is ``s``.

    One ``bincount`` on the device; target classes absent from the batch simply get a zero column.
    """
    flat = source_pred.long() * num_target + target.long()
    return torch.bincount(flat, minlength=num_source * num_target).view(num_source, num_target)


def top1_one_hot(source_logits: torch.Tensor) -> torch.Tensor:
    """Each sample's vote for its top-1 source class, ``[B, S]`` (ties: lowest index)."""
    votes = torch.zeros_like(source_logits, dtype=torch.float32)
    return votes.scatter_(1, source_logits.argmax(dim=1, keepdim=True), 1.0)


def accumulate_statistic(stats: torch.Tensor, contribution: torch.Tensor, target: torch.Tensor) -> None:
    """``stats[:, t] += sum of contribution[b] over samples b of class t``, in place."""
    stats.index_add_(1, target, contribution.t().to(stats.dtype))


# ---------------------------------------------------------------------------------------------
# Mapping modules


class LabelMapping(nn.Module):
    """Interface shared by all output mappings (see the module docstring)."""

    num_source: int
    num_target: int
    reads_features = False  # True: its input is the network's penultimate features, not source logits

    def refresh_due(self, epoch: int) -> bool:
        return False

    def source_statistic(self, source_logits: torch.Tensor) -> torch.Tensor:
        return top1_one_hot(source_logits)

    def fit(self, stats: torch.Tensor) -> None:
        raise NotImplementedError(f"{type(self).__name__} is not fitted from statistics")

    def describe(self, source_names: list[str], target_names: list[str]) -> dict:
        return {}

    def changes_since(self, previous: dict[str, torch.Tensor] | None) -> int | None:
        """How many target classes map differently than under ``previous`` (a state dict)."""
        return None


# ---------------------------------------------------------------------------------------------
# Registry: --mapping NAME

# (num_source, num_target, interval, seed) -> mapping
MappingFactory = Callable[[int, int, int, int], LabelMapping]
MAPPINGS: dict[str, MappingFactory] = {}
MAPPING_DESCRIPTIONS: dict[str, str] = {}
# ``--mapping``: every registered name with its description
MAPPING_CHOICES = Choices("mapping", lambda: MAPPING_DESCRIPTIONS)
# dataset name -> the batch size the mapping's reference code trains with on it
BatchSizeRule = Callable[[str], int]
BATCH_SIZES: dict[str, BatchSizeRule] = {}
FEATURE_READERS: set[str] = set()  # mappings that read the penultimate features (register_mapping(reads_features=True))
MAPPING_OPTIONS: dict[str, type[Options]] = {}  # mapping name -> the options class it reads (register_mapping(options=...))


def register_mapping(
    name: str, description: str | None = None, batch_size: BatchSizeRule | None = None, reads_features: bool = False,
    options: type[Options] | None = None,
) -> Callable[[MappingFactory], MappingFactory]:
    """Decorator: make ``factory(num_source, num_target, interval, seed)`` available as ``--mapping name``.

    ``description`` (default: the factory's docstring, first line) is its line in ``--help``;
    ``batch_size(dataset)``, if given, is the default ``--batch-size`` of runs with this mapping
    (its reference recipe), in place of the dataset's. ``reads_features``: the factory's first
    argument is the network's feature size, and the network ends at its features. ``options``: the
    :class:`common.options.Options` class of its own flags (the families offering it list the class
    in their ``options``; :func:`check_mapping_options` and :func:`complete_mapping_options` apply).
    """

    def decorator(factory: MappingFactory) -> MappingFactory:
        MAPPINGS[name] = factory
        MAPPING_DESCRIPTIONS[name] = first_line(factory) if description is None else description
        if batch_size is not None:
            BATCH_SIZES[name] = batch_size
        if reads_features:
            FEATURE_READERS.add(name)
        if options is not None:
            MAPPING_OPTIONS[name] = options
        return factory

    return decorator


def mapping_batch_size(name: str, dataset: str) -> int | None:
    """The batch size the mapping ``name`` prescribes on ``dataset``; None: the dataset's default."""
    rule = BATCH_SIZES.get(name)
    return None if rule is None else rule(dataset)


def reads_features(name: str) -> bool:
    """Whether ``--mapping name`` reads the network's penultimate features instead of its source logits."""
    return MAPPING_CHOICES.resolve(name) in FEATURE_READERS


def mapping_options(name: str) -> type[Options] | None:
    """The options class ``--mapping name`` reads (an alias resolved); None: it has no options."""
    return MAPPING_OPTIONS.get(MAPPING_CHOICES.resolve(name))


def check_mapping_options(config) -> None:
    """An option of a mapping other than ``config.mapping``, given: one error (a run's settings, duck-typed)."""
    chosen = mapping_options(config.mapping)
    for name, cls in MAPPING_OPTIONS.items():
        if cls is not chosen:
            for option_name in given(cls, config.option_values):
                raise UserError(f"{flag_of(cls, option_name)} applies to --mapping {name}, not --mapping {config.mapping}")


def complete_mapping_options(config) -> None:
    """Every option of the chosen mapping joins the run's settings, defaults included (and so its identity):
    runs of other mappings keep their folders, and a later change of a default names new ones."""
    cls = mapping_options(config.mapping)
    if cls is not None:
        config.option_values.update(asdict(config.options(cls)))


def maps_fewer_targets(name: str, num_source: int = 1000) -> bool:
    """Whether ``--mapping name`` can map ``num_source`` source labels to fewer target classes (the
    reprogramming case); ``identity`` cannot. Built once on a tiny case, nothing is loaded."""
    try:
        build_mapping(name, num_source, 2)
    except UserError:
        return False
    return True


def build_mapping(name: str, num_source: int, num_target: int, *, interval: int = 1, seed: int = 0) -> LabelMapping:
    return MAPPINGS[MAPPING_CHOICES.resolve(name)](num_source, num_target, interval, seed)
