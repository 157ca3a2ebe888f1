"""The command line shared by every method script: every flag, with the method's defaults, into a :class:`RunConfig`."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import cfg
from algorithms.settings import RunConfig
from models.clip.prompts import CLIP_PROMPTS
from models.prompts import PROMPTS


def build_parser(
    method: str, description: str, defaults: dict[str, Any], add_extra: Callable | None, trains_epochs: bool = True
) -> argparse.ArgumentParser:
    """The common flags of every method script; ``defaults`` are the method's paper settings.

    A method without training epochs (``trains_epochs=False``) gets no optimisation, mapping,
    prompt or resume flags.
    """
    base = RunConfig(method=method)
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("task")
    g.add_argument("--network", default=base.network, help="source network (see README: Networks)")
    g.add_argument("--dataset", default=base.dataset, help="target dataset (see README: Datasets)")
    g.add_argument("--weights", default=None, help="local weights file instead of the torch hub cache")
    g.add_argument("--image-size", type=int, default=None, help="decode images at this size (default: the dataset's)")
    g.add_argument("--max-train-samples", type=int, default=None, help="seeded class-balanced training subset")
    g.add_argument("--max-test-samples", type=int, default=None, help="seeded class-balanced test (and validation) subset")
    g.add_argument("--train-fraction", type=float, default=None, help="keep this seeded, class-stratified fraction of train")
    g.add_argument("--val-fraction", type=float, default=None,
                   help="validation split: the dataset's own (CoOp val) if it has one, else this seeded class-stratified fraction of train; 0 = no validation")  # fmt: skip
    g.add_argument("--shots", type=int, default=None,
                   help="few-shot: K training images per class, drawn with --subset-seed (for one seed, the K-shot set is part of every larger one);"
                        " any --val-fraction is held out first; default: all")  # fmt: skip
    g.add_argument("--subset-seed", type=int, default=base.subset_seed, help="seed of the subsets (fixed across --seed)")
    g = p.add_argument_group("optimisation")
    if trains_epochs:
        add_optimisation_arguments(g, base)
    g.add_argument("--batch-size", type=int, default=None, help="per process: under torchrun the global batch is nproc x this (default: the dataset's)")
    g.add_argument("--eval-batch-size", type=int, default=None, help="default: twice the batch size")
    g.add_argument("--seed", type=int, default=base.seed)
    if trains_epochs:
        add_method_arguments(p.add_argument_group("method"), base)
    g = p.add_argument_group("execution")
    g.add_argument("--device", default=base.device, help="auto, cpu, cuda, cuda:N")
    g.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default=base.precision,
                   help="autocast precision; auto = bf16 (or fp16) on CUDA, fp32 on CPU")  # fmt: skip
    g.add_argument("--no-channels-last", dest="channels_last", action="store_false", help="keep NCHW memory format")
    g.add_argument("--compile", action="store_true", help="torch.compile the network")
    g.add_argument("--no-fold-bn", dest="fold_bn", action="store_false",
                   help="keep the frozen network's batch norms instead of folding them into the convolutions")  # fmt: skip
    g.add_argument("--no-fast-frozen-ops", dest="fast_frozen_ops", action="store_false",
                   help="run the frozen network's TF-SAME convolutions and in-place activations as written (outputs are the same)")  # fmt: skip
    g.add_argument("--resident-data", type=lambda s: s.lower() in ("1", "true", "yes"), default=None,
                   help="keep the uint8 data on the device (default: when it fits)")  # fmt: skip
    g = p.add_argument_group("outputs")
    g.add_argument("--data-path", default=None, help=f"data root (default {cfg.DATA_PATH}, env VP_DATA)")
    g.add_argument("--results-path", default=None, help=f"results root (default {cfg.RESULTS_PATH}, env VP_RESULTS)")
    g.add_argument("--run-name", default=None, help="run folder name (default seed<seed>-<config hash>)")
    if trains_epochs:
        g.add_argument("--resume", action="store_true", help="continue from the run folder's ckpt.pth")
        g.add_argument("--eval-only", action="store_true", help="evaluate a saved checkpoint and exit")
        g.add_argument("--checkpoint", default=None, help="with --eval-only: the file to evaluate (default best.pth)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    if trains_epochs:
        g.add_argument("--log-interval", type=int, default=base.log_interval, help="steps between progress-bar updates")
    if add_extra is not None:
        add_extra(p.add_argument_group("method-specific"))
    p.set_defaults(**defaults)
    return p


def config_from_args(method: str, args: argparse.Namespace) -> RunConfig:
    names = {f.name for f in fields(RunConfig)} - {"method", "extra"}
    values = vars(args)
    common = {k: v for k, v in values.items() if k in names}
    extra = {k: v for k, v in values.items() if k not in names}
    return RunConfig(method=method, extra=extra, **common)


def add_optimisation_arguments(g: argparse._ArgumentGroup, base: RunConfig) -> None:
    g.add_argument("--epochs", type=int, default=base.epochs)
    g.add_argument("--lr", type=float, default=base.lr)
    g.add_argument("--optimizer", choices=["adam", "sgd"], default=base.optimizer)
    g.add_argument("--momentum", type=float, default=base.momentum, help="SGD momentum")
    g.add_argument("--weight-decay", type=float, default=base.weight_decay)
    g.add_argument("--scheduler", choices=["multistep", "cosine", "constant"], default=base.scheduler)
    g.add_argument("--milestones", type=float, nargs="+", default=base.milestones, help="multistep: fractions of the epochs")
    g.add_argument("--gamma", type=float, default=base.gamma, help="multistep decay factor")
    g.add_argument("--warmup-steps", type=int, default=base.warmup_steps, help="linear learning-rate warmup")


def add_method_arguments(g: argparse._ArgumentGroup, base: RunConfig) -> None:
    g.add_argument("--mapping", default=base.mapping, help="label mapping: ilm, flm, rlm, hungarian")
    g.add_argument("--mapping-interval", type=int, default=base.mapping_interval, help="ILM: refit every N epochs")
    g.add_argument("--lm-source", choices=["pass", "train"], default=base.lm_source,
                   help="pass: a no-grad pass over train before the epoch (paper); train: counts from the previous epoch's training forward passes")  # fmt: skip
    g.add_argument("--prompt", default=base.prompt,
                   help=f"visual prompt design; CNN methods: {', '.join(sorted(PROMPTS))}; CLIP methods: {', '.join(CLIP_PROMPTS)}")  # fmt: skip
    g.add_argument("--prompt-init", choices=["zero", "randn"], default=base.prompt_init)
