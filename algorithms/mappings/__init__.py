"""Output label mappings (``--mapping NAME``), from the network's source logits to the target logits.

This module lists the mapping modules; importing the package registers every name in :data:`MAPPINGS`.
"""
from algorithms.mappings import head, one_to_one, probabilistic  # noqa: F401  (each registers its mappings)
from algorithms.mappings.base import (
    MAPPING_CHOICES,
    MAPPINGS,
    LabelMapping,
    accumulate_statistic,
    build_mapping,
    check_mapping_options,
    complete_mapping_options,
    frequency_matrix,
    mapping_batch_size,
    reads_features,
    register_mapping,
    top1_one_hot,
)
from algorithms.mappings.head import HEAD, HeadMapping, HeadOptions, features_network, head_group, new_head
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
    "HEAD", "MAPPINGS", "MAPPING_CHOICES", "BayesianMapping", "FrequencyMapping", "HeadMapping", "HeadOptions", "IdentityMapping", "LabelMapping", "LinearMapping",
    "check_mapping_options", "complete_mapping_options", "features_network", "head_group", "new_head", "reads_features",
    "OneToOneMapping", "RandomMapping", "accumulate_statistic", "build_mapping", "frequency_matrix",
    "greedy_one_to_one", "hungarian_one_to_one", "mapping_batch_size", "random_one_to_one", "register_mapping", "top1_one_hot",
]  # fmt: skip
