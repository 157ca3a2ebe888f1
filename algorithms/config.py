"""A run's resolved settings: one dataclass, built from flags, saved whole as ``config.json``."""
from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import cfg

# Settings that change where or how a run executes but not what it computes: left out of the
# hash that names the run folder, so resuming on another device reuses the same folder. Method
# flags (``extra``) of these names are left out too.
VOLATILE = {
    "device", "resume", "eval_only", "checkpoint", "overwrite", "run_name", "results_path",
    "data_path", "log_interval", "compile", "resident_data", "fold_bn", "fast_frozen_ops", "cache_features",
}  # fmt: skip


@dataclass
class RunConfig:
    method: str
    network: str = "resnet18"
    dataset: str = "cifar10"
    # optimisation (paper defaults for the prompt methods)
    epochs: int = 200
    lr: float = 0.01
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: str = "multistep"
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.72])
    gamma: float = 0.1
    warmup_steps: int = 0
    batch_size: int | None = None
    eval_batch_size: int | None = None
    seed: int = 7
    # method
    mapping: str = "ilm"
    mapping_interval: int = 1
    lm_source: str = "pass"
    prompt: str = "pad"
    prompt_init: str = "zero"
    # data
    image_size: int | None = None
    max_train_samples: int | None = None
    max_test_samples: int | None = None
    train_fraction: float | None = None
    val_fraction: float | None = None
    subset_seed: int = 0
    # network
    weights: str | None = None
    # execution
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    fold_bn: bool = True
    fast_frozen_ops: bool = True
    resident_data: bool | None = None
    # paths and run control
    data_path: str | None = None
    results_path: str | None = None
    run_name: str | None = None
    resume: bool = False
    eval_only: bool = False
    checkpoint: str | None = None
    overwrite: bool = False
    log_interval: int = 50
    # method-family flags (CLIP template number, ...), kept by name
    extra: dict[str, Any] = field(default_factory=dict)

    # -- derived -------------------------------------------------------------------------------
    @property
    def data_root(self) -> Path:
        return Path(self.data_path).expanduser() if self.data_path else cfg.DATA_PATH

    @property
    def results_root(self) -> Path:
        return Path(self.results_path).expanduser() if self.results_path else cfg.RESULTS_PATH

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """The settings that determine the result."""
        settings = {k: v for k, v in self.to_dict().items() if k not in VOLATILE}
        settings["extra"] = {k: v for k, v in self.extra.items() if k not in VOLATILE}
        return settings

    def config_hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:8]

    @property
    def run_id(self) -> str:
        return self.run_name or f"seed{self.seed}-{self.config_hash()}"

    def run_path(self) -> Path:
        # a model name such as CLIP's ViT-B/32 must stay one folder
        return self.results_root / self.method / self.dataset / self.network.replace("/", "-") / self.run_id


def _optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "") else int(text)


def build_parser(method: str, description: str, defaults: dict[str, Any], add_extra: Callable | None) -> argparse.ArgumentParser:
    """The common flags of every method script; ``defaults`` are the method's paper settings."""
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
    g.add_argument("--subset-seed", type=int, default=base.subset_seed, help="seed of the subsets (fixed across --seed)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=base.epochs)
    g.add_argument("--lr", type=float, default=base.lr)
    g.add_argument("--optimizer", choices=["adam", "sgd"], default=base.optimizer)
    g.add_argument("--momentum", type=float, default=base.momentum, help="SGD momentum")
    g.add_argument("--weight-decay", type=float, default=base.weight_decay)
    g.add_argument("--scheduler", choices=["multistep", "cosine", "constant"], default=base.scheduler)
    g.add_argument("--milestones", type=float, nargs="+", default=base.milestones, help="multistep: fractions of the epochs")
    g.add_argument("--gamma", type=float, default=base.gamma, help="multistep decay factor")
    g.add_argument("--warmup-steps", type=int, default=base.warmup_steps, help="linear learning-rate warmup")
    g.add_argument("--batch-size", type=int, default=None, help="per process: under torchrun the global batch is nproc x this (default: the dataset's)")
    g.add_argument("--eval-batch-size", type=int, default=None, help="default: twice the batch size")
    g.add_argument("--seed", type=int, default=base.seed)
    g = p.add_argument_group("method")
    g.add_argument("--mapping", default=base.mapping, help="label mapping: ilm, flm, rlm, hungarian")
    g.add_argument("--mapping-interval", type=int, default=base.mapping_interval, help="ILM: refit every N epochs")
    g.add_argument("--lm-source", choices=["pass", "train"], default=base.lm_source,
                   help="pass: a no-grad pass over train before the epoch (paper); train: counts from the previous epoch's training forward passes")  # fmt: skip
    g.add_argument("--prompt", default=base.prompt, help="visual prompt design")
    g.add_argument("--prompt-init", choices=["zero", "randn"], default=base.prompt_init)
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
    g.add_argument("--resume", action="store_true", help="continue from the run folder's ckpt.pth")
    g.add_argument("--eval-only", action="store_true", help="evaluate a saved checkpoint and exit")
    g.add_argument("--checkpoint", default=None, help="with --eval-only: the file to evaluate (default best.pth)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
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
