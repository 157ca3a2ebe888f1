"""The random draws of one training batch's augmentation: one stream per sample.

Each sample's stream is keyed by (run seed, epoch, the sample's index in the dataset)
(:func:`common.seeding.sample_keys`), so what a sample draws does not depend on the batch it lands
in, its position there, or the rank that holds it: any number of ranks reproduces the one-process
run, and a resumed run replays it. Crops and flips take a fixed number of uniforms per sample
and step from a counter-based stream (:meth:`AugmentDraws.uniform`, vectorised over the batch);
TrivialAugment draws from a CPU generator per sample (:meth:`AugmentDraws.generators`), in
torchvision's order.
"""
from __future__ import annotations

import torch

from common.seeding import counter_uniforms, sample_keys


class AugmentDraws:
    """Random streams for one batch: ``indices[b]`` is sample ``b``'s index in the training set.

    ``epoch_generator`` is the engine's per-epoch generator, for an augmentation drawn once per
    batch (CLIP's random-patch prompt); such a draw is not rank-independent.
    """

    def __init__(self, seed: int, epoch: int, indices: torch.Tensor, epoch_generator: torch.Generator | None = None) -> None:
        self.indices = indices.cpu()
        self.keys = sample_keys(seed, epoch, self.indices)
        self.epoch_generator = epoch_generator
        self._drawn = 0  # uniforms already taken from each sample's counter stream
        self._generators: list[torch.Generator] | None = None

    @classmethod
    def first(cls, n: int, seed: int = 0, epoch: int = 0) -> AugmentDraws:
        """Draws for samples ``0 .. n-1`` (tests and tools)."""
        return cls(seed, epoch, torch.arange(n))

    def __len__(self) -> int:
        return len(self.indices)

    def uniform(self, k: int) -> torch.Tensor:
        """``[B, k]`` float64 uniforms in [0, 1): the next ``k`` numbers of every sample's stream."""
        u = counter_uniforms(self.keys, self._drawn, k)
        self._drawn += k
        return u

    def generators(self) -> list[torch.Generator]:
        """One CPU generator per sample (seeded by its key), created on first use; later steps continue them."""
        if self._generators is None:
            self._generators = [torch.Generator().manual_seed(key % 2**63) for key in self.keys.tolist()]
        return self._generators


def randint_from(u: torch.Tensor, high: int | torch.Tensor) -> torch.Tensor:
    """Integers uniform in ``[0, high)`` from uniforms ``u`` in [0, 1) (``floor(u * high)``)."""
    return torch.minimum((u * high).floor().long(), torch.as_tensor(high) - 1)
