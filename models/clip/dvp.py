"""DVP: decoupled visual prompts for CLIP (Cai, Ye, Feng, Qi, Liu, ICML 2025).

``P`` prompts share one frozen CLIP image encoder. Every class has ``n`` descriptions (sentences,
encoded once by CLIP's text encoder), and each description belongs to one *group*; group ``i`` is
scored only through prompt ``i``:

    score[b, j] = logit_scale.exp() * cos(f(prompt_g(j)(x_b)), t_j)     (t_j: description j, g(j): its group)

Descriptions are laid out class-major (description ``c * n + l`` is the ``l``-th of class ``c``),
so the scores are ``[B, C * n]``, viewed ``[B, C, n]``. The class logits are ``scores @ PRM`` with
the probabilistic reweighting matrix ``PRM [C * n, C]``: nonzero only on each class's own ``n``
descriptions, each column summing to 1. It starts at ``1 / n`` and is re-estimated after every
epoch from the training samples' scores (:func:`count_top_k`, :func:`reweighting_matrix`).

The groups come from the method: by *cause* (one description file per cause, prompt ``i`` for
file ``i``) or by *cluster* (k-means on the description embeddings, :func:`cluster_descriptions`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import full_precision
from models.patterns import PromptPicture, signed_picture
from models.reprogrammer import ReprogrammingModel

# ---------------------------------------------------------------------------------------------
# The reweighting matrix: counting and estimating


def own_class_top_k(scores: torch.Tensor, labels: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """``[B, k]`` description indices: each sample's ``k`` highest scores among its own class's ``n``.

    ``scores [B, C * n]`` class-major. Ties go to the lower index (a stable sort), so the choice
    never depends on the device.
    """
    own = scores.view(scores.shape[0], -1, n)[torch.arange(scores.shape[0], device=scores.device), labels]  # [B, n]
    order = own.sort(dim=1, descending=True, stable=True).indices[:, :k]
    return labels.unsqueeze(1) * n + order


def count_top_k(counts: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, n: int, k: int) -> None:
    """``counts [C * n] += 1`` at each sample's :func:`own_class_top_k` descriptions, in place.

    A description is only ever counted for its own class: the counts are one vector over the
    descriptions, and a sample of class ``c`` adds only to ``c``'s block.
    """
    index = own_class_top_k(scores, labels, n, k).flatten()
    counts.index_add_(0, index, torch.ones_like(index, dtype=counts.dtype))


def initial_reweighting(num_classes: int, n: int) -> torch.Tensor:
    """``[C * n, C]``: ``1 / n`` on each class's own ``n`` descriptions, zero elsewhere."""
    return reweighting_matrix(torch.ones(num_classes * n), n)


def own_class_weights(prm: torch.Tensor, n: int) -> torch.Tensor:
    """``[C, n]``: each class's weights on its own ``n`` descriptions, read from ``prm [C * n, C]``."""
    num_classes = prm.shape[1]
    index = torch.arange(num_classes, device=prm.device)
    return prm.view(num_classes, n, num_classes)[index, :, index]


def reweighting_matrix(counts: torch.Tensor, n: int, previous: torch.Tensor | None = None) -> torch.Tensor:
    """``[C * n, C]`` from ``counts [C * n]``: each class's counts divided by their sum, in its own column.

    A class with no count (no training sample of it seen) keeps its weights of ``previous``
    (default: ``1 / n`` each).
    """
    block = counts.detach().double().view(-1, n)  # [C, n]
    num_classes = block.shape[0]
    totals = block.sum(dim=1, keepdim=True)
    fallback = torch.full_like(block, 1.0 / n) if previous is None else own_class_weights(previous.detach().double().to(block.device), n)
    weights = torch.where(totals > 0, block / torch.where(totals > 0, totals, torch.ones_like(totals)), fallback)
    index = torch.arange(num_classes, device=block.device)
    prm = torch.zeros(num_classes, n, num_classes, dtype=torch.float64, device=block.device)
    prm[index, :, index] = weights
    return prm.view(num_classes * n, num_classes).float()


class ReweightingMatrix(nn.Module):
    """The PRM as the model's label mapping: ``class logits = scores @ weight``.

    ``weight`` is a persistent buffer (in every checkpoint, ``best.pth`` too), set by
    :meth:`estimate`. It offers what the engine reads of a label mapping (``num_source``,
    ``num_target``, ``reads_features``, ``describe``, ``refresh_due``, ``changes_since``): the
    mapping hook (``MappingRefit``) writes its per-epoch file and heatmap counts but never refits
    it (never due); only DVP's own epoch hook estimates it.
    """

    reads_features = False  # it reads the description scores (the engine's MappingRefit asks)

    def __init__(self, num_classes: int, n: int) -> None:
        super().__init__()
        self.n, self.num_source, self.num_target = n, num_classes * n, num_classes
        self.register_buffer("weight", initial_reweighting(num_classes, n))

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return scores @ self.weight

    @torch.no_grad()
    def estimate(self, counts: torch.Tensor) -> None:
        """Re-estimate from one epoch's counts (:func:`count_top_k`)."""
        self.weight.copy_(reweighting_matrix(counts, self.n, self.weight).to(self.weight.device))

    def refresh_due(self, epoch: int) -> bool:
        return False

    def changes_since(self, previous: dict[str, torch.Tensor] | None) -> int | None:
        return None

    def describe(self, source_names: list[str], target_names: list[str], top: int = 5) -> dict:
        """Per class, its ``top`` heaviest descriptions with their weights."""
        view = {}
        for c, name in enumerate(target_names):
            column = self.weight[c * self.n : (c + 1) * self.n, c].cpu()
            values, order = column.topk(min(top, self.n))
            view[name] = {source_names[c * self.n + int(j)]: round(float(v), 4) for v, j in zip(values, order)}
        return view


# ---------------------------------------------------------------------------------------------
# Grouping by cluster


def cluster_descriptions(embeddings: torch.Tensor, k: int, seed: int = 0, n_init: int = 10) -> torch.Tensor:
    """``[N]`` group of each of the ``N`` description embeddings: scikit-learn's k-means, ``random_state=seed``.

    Groups are numbered by their first member (description 0 is in group 0), so the numbering
    does not depend on the k-means labels' order. ``n_init`` is explicit because scikit-learn's
    default changed between versions.
    """
    from sklearn.cluster import KMeans

    if not 1 <= k <= embeddings.shape[0]:
        raise ValueError(f"cannot split {embeddings.shape[0]} descriptions into {k} clusters")
    points = embeddings.detach().cpu().double().numpy()
    labels = torch.as_tensor(KMeans(n_clusters=k, random_state=seed, n_init=n_init).fit_predict(points), dtype=torch.long)
    first_seen = {int(label): None for label in labels.tolist()}  # dicts keep insertion order
    renumber = {label: i for i, label in enumerate(first_seen)}
    return torch.tensor([renumber[int(label)] for label in labels.tolist()], dtype=torch.long)


# ---------------------------------------------------------------------------------------------
# The model


class DecoupledPrompts(nn.Module):
    """CLIP preprocessing, then each of the ``P`` prompts: ``[B, 3, H, W]`` -> ``[P * B, 3, S, S]``, prompt-major."""

    def __init__(self, preprocess: nn.Module, prompts: Sequence[nn.Module]) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.prompts = nn.ModuleList(prompts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(x)
        return torch.cat([prompt(x) for prompt in self.prompts])

    @torch.no_grad()
    def picture(self) -> PromptPicture:
        """The ``P`` patterns side by side, on one signed scale."""
        return signed_picture(torch.cat([prompt.pattern() for prompt in self.prompts], dim=2), units="normalized")


class GroupedDescriptionScorer(nn.Module):
    """Frozen image encoder; each description scored against the features of its own group's prompt.

    Takes the ``[P * B, ...]`` prompted images of :class:`DecoupledPrompts`; returns ``[B, N]``
    description scores, in float32 even under autocast. The description embeddings and groups
    are non-persistent buffers: fixed by the description files, ``--seed`` and the weights, and
    built again on resume (as AttrVR's attributes).
    """

    def __init__(self, visual: nn.Module, logit_scale: torch.Tensor, descriptions: torch.Tensor, groups: torch.Tensor, num_prompts: int) -> None:
        super().__init__()
        if descriptions.shape[0] != groups.shape[0]:
            raise ValueError(f"{descriptions.shape[0]} descriptions but {groups.shape[0]} group labels")
        if int(groups.min()) < 0 or int(groups.max()) >= num_prompts:
            raise ValueError(f"group labels must lie in 0..{num_prompts - 1}")
        self.visual, self.num_prompts = visual, num_prompts
        self.register_buffer("scale", logit_scale.detach().float().exp().reshape(()).clone(), persistent=False)
        self.register_buffer("descriptions", F.normalize(descriptions.detach().float(), dim=-1), persistent=False)
        self.register_buffer("groups", groups.detach().long().clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.visual(x)
        with full_precision(features):
            features = F.normalize(features.float(), dim=-1).view(self.num_prompts, -1, features.shape[-1])  # [P, B, D]
            similarity = torch.einsum("pbd,nd->pbn", features, self.descriptions)  # every prompt against every description
            own = similarity.gather(0, self.groups.view(1, 1, -1).expand(1, similarity.shape[1], -1)).squeeze(0)  # [B, N]
            return self.scale * own


class DecoupledVisualPrompting(ReprogrammingModel):
    """DVP as one module: ``P`` prompts -> frozen CLIP image encoder -> grouped description scores -> PRM.

    * :meth:`description_scores` ``[B, C * n]`` and :meth:`grouped_scores` ``[B, C, n]``;
    * ``forward(x)``: the class logits ``scores @ PRM`` (``return_source=True`` adds the scores);
    * :attr:`prm`: the reweighting matrix (a persistent buffer of ``label_mapping``), set by
      :meth:`estimate_prm`.
    """

    def __init__(
        self,
        preprocess: nn.Module,
        prompts: Sequence[nn.Module],
        visual: nn.Module,
        logit_scale: torch.Tensor,
        descriptions: torch.Tensor,
        groups: torch.Tensor,
        num_classes: int,
        *,
        channels_last: bool = True,
        recompute: bool = False,
    ) -> None:
        if descriptions.shape[0] % num_classes:
            raise ValueError(f"{descriptions.shape[0]} descriptions do not split evenly over {num_classes} classes")
        scorer = GroupedDescriptionScorer(visual, logit_scale, descriptions, groups, len(prompts))
        super().__init__(
            DecoupledPrompts(preprocess, prompts), scorer, ReweightingMatrix(num_classes, descriptions.shape[0] // num_classes),
            channels_last=channels_last, recompute=recompute,
        )  # fmt: skip
        self.num_classes, self.descriptions_per_class = num_classes, descriptions.shape[0] // num_classes

    @property
    def prompts(self) -> nn.ModuleList:
        return self.input_transform.prompts

    @property
    def prm(self) -> torch.Tensor:
        return self.label_mapping.weight

    def description_scores(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C * n]`` class-major description scores of images ``x`` in ``[0, 1]``."""
        return self.source_logits(x)

    def grouped_scores(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, n]``: the scores of each class's ``n`` descriptions."""
        return self.description_scores(x).view(x.shape[0], self.num_classes, self.descriptions_per_class)

    def estimate_prm(self, counts: torch.Tensor) -> None:
        self.label_mapping.estimate(counts)
