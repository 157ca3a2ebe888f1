"""Imports every module that registers datasets, so ``--dataset NAME`` finds them all."""
import data.cifar  # noqa: F401
import data.folder  # noqa: F401
import data.gtsrb  # noqa: F401
import data.svhn  # noqa: F401
import data.abide  # noqa: F401
import data.coop  # noqa: F401
import data.imagenet_variants  # noqa: F401
