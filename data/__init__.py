"""Target datasets: a registry of loaders that decode every image once into uint8 tensors.

This module lists the loader modules; importing the package registers every ``--dataset`` name.
"""
from data import abide, cifar, coop, dtd10, folder, gtsrb, imagenet_variants, svhn  # noqa: F401  (each registers its datasets)
from data.registry import DatasetInfo, TargetData, dataset_names, get_dataset_info, load_dataset, register_dataset
from data.tensors import ImageTensorSet

__all__ = [
    "DatasetInfo",
    "ImageTensorSet",
    "TargetData",
    "dataset_names",
    "get_dataset_info",
    "load_dataset",
    "register_dataset",
]
