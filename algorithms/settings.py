"""A run's settings: one dataclass that the methods and the engine read, saved whole as ``config.json``.

The runner builds it from the command line (:mod:`runner.config`); its :meth:`RunConfig.identity`
(every setting that changes the result, and where the data is read) names the run folder and
guards ``--resume``.

The data is part of a run's identity in two parts. Where it is read (the resolved absolute data
root, :attr:`RunConfig.data_location`) is in :meth:`RunConfig.identity`, so two datasets with the
same flags get two folders; it costs no file access, so tools can compute a run's folder without
loading anything (``tools/reproduce.py``). What was read (a fingerprint of the exact samples of
every split, :attr:`data.registry.TargetData.fingerprint`) needs the data loaded: it is stored in
``config.json`` and the checkpoints and compared on ``--resume`` and ``--eval-only``.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import cfg

# Settings that change where or how a run executes but not what it computes: left out of the
# hash that names the run folder, so resuming on another device reuses the same folder. Method
# flags (``extra``) of these names are left out too. ``data_path`` is left out as typed; the
# identity holds its resolved form instead (``data_location``: ``./d`` and ``/abs/d`` are one root).
VOLATILE = {
    "device", "resume", "eval_only", "checkpoint", "overwrite", "run_name", "results_path",
    "data_path", "log_interval", "compile", "resident_data", "fold_bn", "fast_frozen_ops", "cache_features",
    "micro_batch", "recompute",
}  # fmt: skip

DATA_LOCATION = "data_location"  # the key of the resolved data root in RunConfig.identity()


# Settings added after runs had been made with their default behaviour (few-shot, the SMM,
# low-rank, rescaled and ACAVP prompts): left out of the identity while unset, so those runs keep their
# folders (tests/test_help.py pins the folder names of the defaults).
LATER_SETTINGS = {"shots", "input_size", "rank", "mask_layers", "mask_patch", "mask_lr", "mask_decay", "warp_pivot", "gradient_rule"}


def _identifying(key: str, value: Any) -> bool:
    return key not in VOLATILE and not (key in LATER_SETTINGS and value is None)


def result_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The result-determining flags of a saved ``config.json`` ``config`` (or :meth:`RunConfig.to_dict`)."""
    settings = {k: v for k, v in config.items() if _identifying(k, v)}
    settings["extra"] = {k: v for k, v in config.get("extra", {}).items() if _identifying(k, v)}
    return settings


# Method name -> whether, with a run's settings, what it trains depends on how a batch is split
# into chunks (batch norms in training mode, one random draw per forward call). For such runs
# ``micro_batch`` changes the result and so is part of the identity (:meth:`RunConfig.identity`).
# Filled by the method registry from each family's rule.
BATCH_DEPENDENT: dict[str, Callable[[RunConfig], bool]] = {}


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
    decode: str = "squash"  # how stored images become image_size: squash | crop (data.image_io)
    max_train_samples: int | None = None
    max_test_samples: int | None = None
    train_fraction: float | None = None
    val_fraction: float | None = None
    shots: int | None = None
    subset_seed: int = 0
    # network
    weights: str | None = None
    # execution
    device: str = "auto"
    precision: str = "auto"
    eval_precision: str = "fp32"  # evaluation and mapping pass: fp32 (no autocast) | train (body at --precision)
    channels_last: bool = True
    compile: bool = False
    fold_bn: bool = True
    fast_frozen_ops: bool = True
    resident_data: bool | None = None
    micro_batch: int | str | None = None  # chunk size of a training step, "auto", or None: the whole batch at once
    recompute: bool = False  # recompute the frozen network's activations in the backward pass
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
    def data_location(self) -> str:
        """The data root as an absolute path with symlinks resolved (no file is read)."""
        return str(self.data_root.resolve())

    @property
    def results_root(self) -> Path:
        return Path(self.results_path).expanduser() if self.results_path else cfg.RESULTS_PATH

    @property
    def batch_dependent(self) -> bool:
        """Whether the trained part sees the batch as a whole, so that ``micro_batch`` changes the result."""
        rule = BATCH_DEPENDENT.get(self.method)
        return rule is not None and rule(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        """The settings of :meth:`to_dict` (``config.json``) back, ignoring keys this version does not know."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def identity(self) -> dict[str, Any]:
        """The settings that determine the result, with where the data is read (``data_location``)."""
        return {**result_settings(self.to_dict()), **self.chunking_settings(), DATA_LOCATION: self.data_location}

    def chunking_settings(self) -> dict[str, Any]:
        """``micro_batch`` where it changes what the run trains (:attr:`batch_dependent`), else nothing."""
        return {"micro_batch": self.micro_batch} if self.micro_batch is not None and self.batch_dependent else {}

    def config_hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:8]

    @property
    def run_id(self) -> str:
        return self.run_name or f"seed{self.seed}-{self.config_hash()}"

    def run_path(self) -> Path:
        """``<results>/<method>/<dataset>/<network>/<run id>``."""
        # a model name such as CLIP's ViT-B/32 must stay one folder
        return self.results_root / self.method / self.dataset / self.network.replace("/", "-") / self.run_id
