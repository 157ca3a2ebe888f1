"""AttrVR's class scores (Cai et al., ICLR 2025): each image against its k nearest attributes per class.

For image features ``f`` (L2-normalised) and, per class ``c``, ``m`` fixed attribute embeddings
``a_c1..a_cm`` (L2-normalised), the score of one attribute set is

    s_c(f) = mean of the top k of { scale * cos(f, a_cj) : j = 1..m },

and the logit of class ``c`` is ``weight * s_c(descriptive) + (1 - weight) * s_c(distinctive)``.
Which k attributes count is chosen per image in every forward pass, so an image is pulled
towards the attributes it already resembles most (the paper's k-nearest refinement).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import full_precision

SCALE = 100.0  # CLIP's logit scale (OpenAI's CLIP: exp(4.6052) = 100)


def top_k_attribute_scores(features: torch.Tensor, attributes: torch.Tensor, k: int, scale: float = SCALE) -> torch.Tensor:
    """``[B, K]``: per image and class, the mean of the ``k`` largest ``scale * features @ attributes[c].T``.

    ``features [B, D]`` and ``attributes [K, m, D]`` are used as given (normalise them first).
    """
    similarity = scale * torch.einsum("bd,kmd->bkm", features, attributes)
    return similarity.topk(k, dim=-1).values.mean(dim=-1)


class AttributeScorer(nn.Module):
    """Frozen image encoder scored against fixed descriptive and distinctive attribute embeddings.

    Plays the part of the network in :class:`~models.reprogrammer.ReprogrammingModel`: its output
    is one logit per target class, so the identity mapping and the engine's cross-entropy apply.
    The embeddings are non-persistent buffers (checkpoints do not carry them: they are fixed by
    the attribute files, ``--seed`` and the weights, and encoded again on resume).
    """

    def __init__(self, visual: nn.Module, descriptive: torch.Tensor, distinctive: torch.Tensor, k: int = 3, weight: float = 0.5) -> None:
        super().__init__()
        if descriptive.shape[:1] != distinctive.shape[:1] or descriptive.shape[-1] != distinctive.shape[-1]:
            raise ValueError(f"attribute embeddings disagree: {tuple(descriptive.shape)} vs {tuple(distinctive.shape)}")
        if not 1 <= k <= min(descriptive.shape[1], distinctive.shape[1]):
            raise ValueError(f"k={k} must be between 1 and the attributes per class")
        self.visual, self.k, self.weight = visual, k, weight
        self.register_buffer("descriptive", F.normalize(descriptive.detach().float(), dim=-1), persistent=False)
        self.register_buffer("distinctive", F.normalize(distinctive.detach().float(), dim=-1), persistent=False)

    @property
    def num_labels(self) -> int:
        return int(self.descriptive.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.visual(x)
        with full_precision(features):  # similarities in float32 even under autocast, as CLIPClassifier's
            features = F.normalize(features.float(), dim=-1)
            des = top_k_attribute_scores(features, self.descriptive, self.k)
            dist = top_k_attribute_scores(features, self.distinctive, self.k)
            return self.weight * des + (1.0 - self.weight) * dist
