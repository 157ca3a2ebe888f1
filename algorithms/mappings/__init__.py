"""Output label mappings (``--mapping NAME``), from the network's source logits to the target logits.

This module lists the mapping modules; importing the package registers every name in :data:`MAPPINGS`.
"""
from algorithms.mappings import one_to_one, probabilistic  # noqa: F401  (each registers its mappings)
from algorithms.mappings.base import (
    MAPPING_CHOICES,
    MAPPINGS,
    LabelMapping,
    accumulate_statistic,
    build_mapping,
    frequency_matrix,
    mapping_batch_size,
    register_mapping,
    top1_one_hot,
)
from algorithms.mappings.one_to_one import (
    FrequencyMapping,
    IdentityMapping,
    OneToOneMapping,
    RandomMapping,
    greedy_one_to_one,
    hungarian_one_to_one,
    random_one_to_one,
)
from algorithms.mappings.probabilistic import BayesianMapping, LinearMapping

__all__ = [
    "MAPPINGS", "MAPPING_CHOICES", "BayesianMapping", "FrequencyMapping", "IdentityMapping", "LabelMapping", "LinearMapping",
    "OneToOneMapping", "RandomMapping", "accumulate_statistic", "build_mapping", "frequency_matrix",
    "greedy_one_to_one", "hungarian_one_to_one", "mapping_batch_size", "random_one_to_one", "register_mapping", "top1_one_hot",
]  # fmt: skip
