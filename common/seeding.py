"""Seeds and generators that depend only on the run's seed, so a resumed run replays exactly."""
from __future__ import annotations

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
