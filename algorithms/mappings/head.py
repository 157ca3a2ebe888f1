"""``--mapping head``: a new linear layer on the frozen network's penultimate features, trained with the prompt.

LoR-VP's ``lp`` output and EVP's "linear probing with prompt": the network's source logits are not
used; the mapping reads the features its final classifier layer would read (CNN: that layer's
input, e.g. the pooled features; CLIP: the L2-normalised image embedding) and a K-way linear layer
maps them to the target classes. With the prompt fixed at zero it *is* linear probing: the layer
is made by :func:`new_head`, the one linear probing uses, and by default it learns with linear
probing's own optimizer and schedule (:data:`LINEAR_PROBING_RECIPE`), in an optimizer of its own
beside the prompt's (:func:`head_group`). Its options, :class:`HeadOptions`, are declared here once and
registered with the mapping; the families that offer ``--mapping head`` list the class in their options.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from algorithms.mappings.base import LabelMapping, register_mapping
from common.argtypes import non_negative_float, positive_float
from common.options import Options, option
from models.layers import Float32Linear, full_precision

HEAD = "head"  # the --mapping name

# linear probing's optimizer and schedule (Chen et al., CVPR 2023, Table 1's LP; the linear_probing method's defaults)
LINEAR_PROBING_RECIPE = {"optimizer": "adam", "lr": 0.1, "weight_decay": 0.0, "scheduler": "multistep", "milestones": [0.5, 0.72], "gamma": 0.1}


@dataclass(frozen=True)
class HeadOptions(Options):
    """The head's own optimizer; its schedule is linear probing's (multistep at 50 % and 72 % of the
    epochs, x0.1), over the run's epochs. Recorded only when given, except under ``--mapping head``,
    where every value joins the run's identity (:func:`~algorithms.mappings.base.complete_mapping_options`)."""

    head_lr: float = option(LINEAR_PROBING_RECIPE["lr"], "learning rate of --mapping head's linear layer",
                            default_help=f"linear probing's, {LINEAR_PROBING_RECIPE['lr']}", type=positive_float, metavar="LR")  # fmt: skip
    head_optimizer: str = option(LINEAR_PROBING_RECIPE["optimizer"], "optimizer of --mapping head's linear layer: adam or sgd (momentum: --momentum)",
                                 default_help=f"linear probing's, {LINEAR_PROBING_RECIPE['optimizer']}", choices=("adam", "sgd"), metavar="NAME")  # fmt: skip
    head_weight_decay: float = option(LINEAR_PROBING_RECIPE["weight_decay"], "weight decay of --mapping head's linear layer",
                                      default_help=f"linear probing's, {LINEAR_PROBING_RECIPE['weight_decay']}", type=non_negative_float, metavar="WD")  # fmt: skip

    def recipe(self) -> dict:
        """The settings of the head's optimizer, as run settings (:func:`algorithms.engine.schedule.build_optimizations`)."""
        return {**LINEAR_PROBING_RECIPE, "optimizer": self.head_optimizer, "lr": self.head_lr, "weight_decay": self.head_weight_decay}


def new_head(in_features: int, num_classes: int, seed: int) -> nn.Linear:
    """A K-way linear layer with ``nn.Linear``'s default init, drawn from ``seed`` alone; it computes
    its logits in float32 under autocast, as every network's output layer does here.

    Linear probing's head and ``--mapping head``'s are both made here, so they start equal."""
    head = Float32Linear(in_features, num_classes)
    generator = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(in_features)
    with torch.no_grad():
        head.weight.uniform_(-bound, bound, generator=generator)
        head.bias.uniform_(-bound, bound, generator=generator)
    return head


class HeadMapping(LabelMapping):
    """``target_logits = linear(features)``: a trainable K-way layer on the network's penultimate features."""

    reads_features = True  # the network in front of it ends at its features (see features_network)

    def __init__(self, num_features: int, num_target: int, seed: int) -> None:
        super().__init__()
        self.num_source, self.num_target = num_features, num_target
        self.linear = new_head(num_features, num_target, seed)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)


@register_mapping(
    HEAD,
    "a new linear layer on the frozen network's penultimate features (CLIP: the normalised image embedding), trained with the prompt;"
    " its own optimizer, linear probing's by default (--head-lr, --head-optimizer, --head-weight-decay)",
    reads_features=True,
    options=HeadOptions,
)
def _head(num_features: int, num_target: int, interval: int, seed: int) -> LabelMapping:
    return HeadMapping(num_features, num_target, seed)


# ---------------------------------------------------------------------------------------------
# What the network in front of the head computes


def features_network(model: nn.Module) -> tuple[nn.Module, int]:
    """A CNN classifier whose final linear layer is replaced by the identity, and the feature size
    that layer read: the network then outputs what linear probing's head sees."""
    from models.networks import final_linear_layer, replace_module

    name, layer = final_linear_layer(model)
    replace_module(model, name, nn.Identity())
    return model, layer.in_features


class NormalisedImageFeatures(nn.Module):
    """CLIP's image embedding, L2-normalised, in float32 (the input of CLIP's zero-shot and linear-probe classifiers)."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual  # the key of CLIPClassifier's encoder too, so checkpoints read alike

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.visual(x)
        with full_precision(features):
            return F.normalize(features.float(), dim=-1)


def head_group(options: HeadOptions, params: list[nn.Parameter]) -> dict:
    """The head's optimizer group: its parameters in an optimizer of their own (``"recipe"``)."""
    return {"params": params, "recipe": options.recipe()}
