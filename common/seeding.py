"""Seeds and generators that depend only on the run's seed, so a resumed run replays exactly."""
from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A CPU generator that depends only on (seed, epoch, stream), so a resumed run replays exactly."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7919 + stream) % 2**63)


def init_generator(seed: int, name: str) -> torch.Generator:
    """A CPU generator for one trainable initialisation, keyed by the run's seed and the part's ``name``.

    Drawing a prompt, a mask network or a head from its own generator makes its initial value
    independent of how many random numbers anything else (a network's construction, another
    part) consumed before it: the same ``--seed`` gives the same initial prompt on any network.
    """
    digest = int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest()[:8], "little")
    return torch.Generator().manual_seed(digest % 2**63)
