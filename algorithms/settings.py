"""A run's settings: one dataclass that the methods and the engine read, saved whole as ``config.json``.

The runner builds it from the command line (:mod:`runner.config`); its :meth:`RunConfig.identity`
(every setting that changes the result) names the run folder and guards ``--resume``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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
    shots: int | None = None
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
        """``<results>/<method>/<dataset>/<network>/<run id>``."""
        # a model name such as CLIP's ViT-B/32 must stay one folder
        return self.results_root / self.method / self.dataset / self.network.replace("/", "-") / self.run_id
