"""The CLIP linear-probe baseline: logistic regression on frozen image features.

As in Radford et al. (2021, Sec. 3.2 and App. A.3): features are CLIP's image embeddings (no
prompt, CLIP preprocessing), the classifier is an L2-regularised multinomial logistic
regression, and its strength is chosen on a validation split. Here the objective is sklearn's
``C * sum(cross-entropy) + ||W||^2 / 2`` (bias unregularised), written as a mean so that it is
minimised with full-batch L-BFGS in torch, on the run's device. The validation split is the
dataset's own, or a seeded class-stratified ``--val-fraction`` of train; the chosen ``C`` is
refitted on train + validation before the single test evaluation.

Outputs follow the other scripts: ``config.json``, ``results.json`` (``best_test_acc`` is the
test accuracy of the chosen ``C``) and ``probe.pth`` (weights, bias, C) in the run folder.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

import cfg
from algorithms.cli import data_root_for, git_commit, library_versions
from algorithms.clip_methods import clip_from_config
from algorithms.config import RunConfig
from algorithms.engine import stacked_outputs
from algorithms.errors import UserError
from algorithms.run_dir import RunDir
from algorithms.runtime import Runtime, seed_everything, setup_runtime
from data.loader import BatchLoader
from data.registry import SubsetSpec, load_dataset
from data.tensors import ImageTensorSet, stratified_subset
from models.clip_model import CLIPPreprocess

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
def image_features(encoder: nn.Module, images: ImageTensorSet, runtime: Runtime, batch_size: int) -> torch.Tensor:
    """CLIP image embeddings ``[N, D]`` (float32, on the run's device) of a uint8 set."""
    encoder.to(runtime.device).eval()
    return stacked_outputs(encoder, BatchLoader(images, batch_size, runtime.device, shuffle=False), runtime, resident=True)


def split_validation(train: ImageTensorSet, fraction: float, seed: int) -> tuple[ImageTensorSet, ImageTensorSet]:
    if not 0 < fraction < 1:
        raise UserError(f"--val-fraction must be in (0, 1), got {fraction}")
    val_idx = stratified_subset(train.labels, fraction=fraction, seed=seed)
    keep = torch.ones(len(train), dtype=torch.bool)
    keep[val_idx] = False
    if not keep.any():
        raise UserError("the training set is too small to carve a validation split from it")
    return train.take(torch.nonzero(keep).flatten()), train.take(val_idx)


# ---------------------------------------------------------------------------------------------
# The script


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="CLIP linear probe: logistic regression on frozen CLIP image features.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    p.add_argument("--network", default="ViT-B/32", help="CLIP model (OpenAI or open_clip spelling)")
    p.add_argument("--clip-pretrained", default="openai", help="open_clip pretrained tag; none: random weights")
    p.add_argument("--clip-weights", default=None, help="local CLIP checkpoint instead of the tag's file")
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--image-size", type=int, default=None, help="decode images at this size (default: the dataset's)")
    p.add_argument("--max-train-samples", type=int, default=None)
    p.add_argument("--max-test-samples", type=int, default=None)
    p.add_argument("--train-fraction", type=float, default=None)
    p.add_argument("--subset-seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of train held out to choose C (when the dataset has no val split)")
    p.add_argument("--c-values", type=float, nargs="+", default=DEFAULT_C_VALUES, help="inverse regularisation strengths to try")
    p.add_argument("--max-iter", type=int, default=300, help="L-BFGS iterations per fit")
    p.add_argument("--batch-size", type=int, default=None, help="feature-extraction batch (default: twice the dataset's)")
    p.add_argument("--seed", type=int, default=7, help="seed of the validation split")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    p.add_argument("--data-path", default=None, help=f"data root (default {cfg.DATA_PATH})")
    p.add_argument("--results-path", default=None, help=f"results root (default {cfg.RESULTS_PATH})")
    p.add_argument("--run-name", default=None)
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    return p


def config_from_args(args: argparse.Namespace) -> RunConfig:
    common = {k: getattr(args, k) for k in (
        "network", "dataset", "image_size", "max_train_samples", "max_test_samples", "train_fraction", "subset_seed",
        "batch_size", "seed", "device", "precision", "data_path", "results_path", "run_name", "overwrite",
    )}  # fmt: skip
    extra = {k: getattr(args, k) for k in ("clip_pretrained", "clip_weights", "val_fraction", "c_values", "max_iter")}
    return RunConfig(method=METHOD, extra=extra, **common)


def run(config: RunConfig, argv: list[str] | None = None) -> dict:
    start = time.perf_counter()
    runtime = setup_runtime(config.device, config.precision)
    seed_everything(config.seed)
    run_dir = RunDir(config.run_path(), enabled=runtime.is_main)
    run_dir.prepare(resume=False, overwrite=config.overwrite, eval_only=False)
    data = load_dataset(
        config.dataset, data_root_for(config), image_size=config.image_size, batch_size=None, download=cfg.DOWNLOAD,
        subset=SubsetSpec(config.max_train_samples, config.max_test_samples, config.train_fraction, config.subset_seed),
    )  # fmt: skip
    extra = config.extra
    train, val = (data.train, data.val) if data.val is not None else split_validation(data.train, extra["val_fraction"], config.seed)
    clip = clip_from_config(config)
    encoder = nn.Sequential(CLIPPreprocess(clip.image_size, clip.mean, clip.std), clip.model.visual)
    batch = config.batch_size or 2 * data.batch_size
    x_train, x_val, x_test = (image_features(encoder, s, runtime, batch) for s in (train, val, data.test))
    y_train, y_val, y_test = (s.labels.to(runtime.device) for s in (train, val, data.test))
    sizes = {"train": len(train), "val": len(val), "test": len(data.test)}
    run_dir.write_json("config.json", {
        "config": config.to_dict(), "config_hash": config.config_hash(),
        "resolved": {"run_dir": str(run_dir.path), "device": str(runtime.device), "precision": runtime.precision,
                     "data_sizes": sizes, "clip_model": clip.name, "clip_weights": clip.weights_id, "feature_dim": x_train.shape[1]},
        "versions": library_versions(), "git_commit": git_commit(), "command": [sys.executable, *(sys.argv if argv is None else argv)],
    })  # fmt: skip
    features_seconds = time.perf_counter() - start
    best_c, val_scores = select_c((x_train, y_train), (x_val, y_val), data.num_classes, extra["c_values"], extra["max_iter"])
    weight, bias = fit_logistic_regression(torch.cat([x_train, x_val]), torch.cat([y_train, y_val]), data.num_classes, best_c, extra["max_iter"])
    test_acc = accuracy(weight, bias, x_test, y_test)
    run_dir.save("probe.pth", {"weight": weight.cpu(), "bias": bias.cpu(), "C": best_c, "class_names": data.class_names, "config": config.identity()})
    results = {
        "method": METHOD, "dataset": config.dataset, "network": config.network, "seed": config.seed,
        "final_test_acc": test_acc, "best_test_acc": test_acc, "best_c": best_c, "val_acc_by_c": val_scores,
        "trainable_params": weight.numel() + bias.numel(), "data_sizes": sizes, "clip_model": clip.name,
        "clip_weights": clip.weights_id, "features_seconds": features_seconds, "total_seconds": time.perf_counter() - start,
    }  # fmt: skip
    run_dir.write_json("results.json", results)
    if runtime.is_main:
        print(f"run folder: {run_dir.path}\nlinear probe: C={best_c:g} (val {val_scores[f'{best_c:g}']:.2f}%), test accuracy {test_acc:.2f}%", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    try:
        run(config_from_args(build_parser().parse_args(argv)), argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
