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


# SplitMix64 (Steele, Lea & Flood, OOPSLA 2014) on int64 tensors: wrapping multiplication, logical shifts.
_GOLDEN = 0x9E3779B97F4A7C15 - 2**64
_MIX1 = 0xBF58476D1CE4E5B9 - 2**64
_MIX2 = 0x94D049BB133111EB - 2**64


def _shift_right(z: torch.Tensor, bits: int) -> torch.Tensor:
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def splitmix64(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser of ``z + golden ratio`` on int64 tensors (bit patterns as unsigned 64-bit)."""
    z = z + _GOLDEN
    z = (z ^ _shift_right(z, 30)) * _MIX1
    z = (z ^ _shift_right(z, 27)) * _MIX2
    return z ^ _shift_right(z, 31)


def sample_keys(seed: int, epoch: int, indices: torch.Tensor) -> torch.Tensor:
    """The keys (int64) of samples' augmentation streams: a function of (seed, epoch, the sample's
    index in the dataset) alone, so a sample draws the same wherever it lands (any batch, any rank)."""
    base = splitmix64(splitmix64(torch.tensor(seed, dtype=torch.int64)) ^ torch.tensor(epoch, dtype=torch.int64))
    return splitmix64(base ^ indices.to(torch.int64))


def counter_uniforms(keys: torch.Tensor, start: int, k: int) -> torch.Tensor:
    """``[B, k]`` float64 uniforms in [0, 1): numbers ``start .. start + k - 1`` of each key's
    counter-based stream (the top 53 bits of SplitMix64 of key and counter)."""
    counters = torch.arange(start, start + k, dtype=torch.int64)
    z = splitmix64(splitmix64(keys[:, None] ^ counters[None, :]) + keys[:, None])
    return _shift_right(z, 11).double() * 2.0**-53
