"""The CLIP linear-probe baseline: logistic regression on frozen image features.

As in Radford et al. (2021, Sec. 3.2 and App. A.3): features are CLIP's image embeddings (no
prompt, CLIP preprocessing), the classifier is an L2-regularised multinomial logistic
regression, and its strength is chosen on a validation split. Here the objective is sklearn's
``C * sum(cross-entropy) + ||W||^2 / 2`` (bias unregularised), written as a mean so that it is
minimised with full-batch L-BFGS in torch, on the run's device. The validation split is the
dataset's own, or a seeded class-stratified ``--val-fraction`` of train; the chosen ``C`` is
refitted on train + validation before the single test evaluation.

It runs on the shared runner like every method (same flags, run folder and ``config.json``) but
has no training epochs: the family *solves* the task in one call. ``results.json``'s
``best_test_acc`` is the test accuracy of the chosen ``C``; ``probe.pth`` holds the weights, bias
and C.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from algorithms.engine import data_identity, stacked_outputs
from algorithms.methods.clip_prompting import CLIPModelOptions, clip_from_config, clip_input_side, clip_weights
from algorithms.methods.registry import MethodSpec, register_family, register_method
from algorithms.outputs import RunOutputs
from algorithms.runtime import Runtime
from algorithms.settings import RunConfig
from common.argtypes import positive_float, positive_int
from common.errors import UserError
from common.options import ALWAYS, Options, option
from data.loader import BatchLoader
from data.registry import TargetData
from data.tensors import ImageTensorSet
from models.clip.model import CLIP_NETWORKS, CLIPPreprocess

METHOD = "clip_linear_probe"
DEFAULT_C_VALUES = [10.0**e for e in range(-6, 7)]


# ---------------------------------------------------------------------------------------------
# Logistic regression


def regularised_loss(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, y: torch.Tensor, c: float) -> torch.Tensor:
    """``mean CE + ||W||^2 / (2 C N)``: sklearn's objective divided by ``C N``."""
    return F.cross_entropy(x @ weight.t() + bias, y) + weight.pow(2).sum() / (2.0 * c * x.shape[0])


def fit_logistic_regression(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    c: float,
    max_iter: int = 300,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise :func:`regularised_loss` with L-BFGS from zero (or ``init``); returns ``(weight [K, D], bias [K])``.

    The problem is convex, so the start only changes how fast the minimum is reached.
    """
    if c <= 0:
        raise UserError(f"C must be positive, got {c}")
    if init is None:
        init = (x.new_zeros(num_classes, x.shape[1]), x.new_zeros(num_classes))
    weight, bias = (t.detach().clone().requires_grad_(True) for t in init)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, history_size=20, tolerance_grad=1e-7, tolerance_change=1e-12, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = regularised_loss(weight, bias, x, y, c)
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def accuracy(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    return 100.0 * int(((x @ weight.t() + bias).argmax(dim=1) == y).sum()) / max(1, len(y))


def select_c(
    train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor], num_classes: int, c_values: list[float], max_iter: int = 300
) -> tuple[float, dict[str, float]]:
    """The ``C`` with the best validation accuracy (ties: the smallest, i.e. the strongest regularisation).

    ``C`` grows along the grid and each fit starts from the previous solution (a regularisation path).
    """
    scores, solution = {}, None
    for c in sorted(c_values):
        solution = fit_logistic_regression(*train, num_classes, c, max_iter, init=solution)
        scores[c] = accuracy(*solution, *val)
    best = max(scores.values())
    chosen = min(c for c, score in scores.items() if score == best)
    return chosen, {f"{c:g}": score for c, score in scores.items()}


# ---------------------------------------------------------------------------------------------
# Features


@torch.no_grad()
def image_features(encoder: nn.Module, images: ImageTensorSet, runtime: Runtime, batch_size: int, split: str = "images") -> torch.Tensor:
    """CLIP image embeddings ``[N, D]`` (float32, on the run's device) of a uint8 set, at the
    evaluation precision (``--eval-precision``): the encoder only ever evaluates here."""
    encoder.to(runtime.device).eval()
    loader = BatchLoader(images, batch_size, runtime.device, shuffle=False)
    return stacked_outputs(
        encoder, loader, runtime, resident=True, precision=runtime.eval_precision or runtime.precision, desc=f"CLIP features ({split})"
    )


# ---------------------------------------------------------------------------------------------
# The family


@dataclass(frozen=True)
class LinearProbeOptions(Options):
    """The logistic regression's search."""

    RECORDED = ALWAYS
    c_values: list[float] = option(DEFAULT_C_VALUES, "inverse regularisation strengths to try", type=positive_float, nargs="+", metavar="C")
    max_iter: int = option(300, "L-BFGS iterations per fit", type=positive_int, metavar="N")


def solve_linear_probe(config: RunConfig, data: TargetData, runtime: Runtime, outputs: RunOutputs) -> dict:
    """Features once, ``C`` chosen on validation, refit on train + validation, one test evaluation."""
    if data.val is None:
        raise UserError(f"{METHOD} chooses C on a validation split: pass --val-fraction F in (0, 1) (the dataset has no val split)")
    start = time.perf_counter()
    options = config.options(LinearProbeOptions)
    clip = clip_from_config(config)
    encoder = nn.Sequential(CLIPPreprocess(clip.image_size, clip.mean, clip.std), clip.model.visual)
    batch = config.batch_size or 2 * data.batch_size
    x_train, x_val, x_test = (image_features(encoder, s, runtime, batch, n) for s, n in ((data.train, "train"), (data.val, "val"), (data.test, "test")))
    y_train, y_val, y_test = (s.labels.to(runtime.device) for s in (data.train, data.val, data.test))
    features_seconds = time.perf_counter() - start
    best_c, val_scores = select_c((x_train, y_train), (x_val, y_val), data.num_classes, options.c_values, options.max_iter)
    weight, bias = fit_logistic_regression(torch.cat([x_train, x_val]), torch.cat([y_train, y_val]), data.num_classes, best_c, options.max_iter)
    test_acc = accuracy(weight, bias, x_test, y_test)
    outputs.save("probe.pth", {"weight": weight.cpu(), "bias": bias.cpu(), "C": best_c, "class_names": data.class_names,
                              "config": config.identity(), "data": data_identity(data)})  # fmt: skip
    results = {
        "method": config.method, "dataset": config.dataset, "network": config.network, "seed": config.seed,
        "final_test_acc": test_acc, "best_test_acc": test_acc, "best_c": best_c, "val_acc_by_c": val_scores,
        "trainable_params": weight.numel() + bias.numel(), "data_sizes": data.sizes(), "clip_model": clip.name,
        "clip_weights": clip.weights_id, "feature_dim": x_train.shape[1], "features_seconds": features_seconds,
        "total_seconds": time.perf_counter() - start,
    }  # fmt: skip
    outputs.write_json("results.json", results)
    if runtime.is_main:
        print(f"linear probe: C={best_c:g} (val {val_scores[f'{best_c:g}']:.2f}%), test accuracy {test_acc:.2f}%", flush=True)
    return results


register_family(
    "clip_linear_probe", options=(CLIPModelOptions, LinearProbeOptions), solve=solve_linear_probe, networks=CLIP_NETWORKS, input_size=clip_input_side,
    weights=clip_weights,
)
register_method(MethodSpec(METHOD, "clip_linear_probe", "CLIP linear probe: logistic regression on frozen CLIP image features, C chosen on validation (Radford et al., 2021).",
                           {"network": "ViT-B/32", "val_fraction": 0.2, "mapping": "identity", "decode": "crop"}))  # fmt: skip
