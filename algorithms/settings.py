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
from dataclasses import InitVar, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import cfg
from common.errors import UserError
from common.options import Options, option_fields, options_from

OptionsT = TypeVar("OptionsT", bound=Options)

# Settings that change where or how a run executes but not what it computes: left out of the
# hash that names the run folder, so resuming on another device reuses the same folder. Options
# (``option_values``) of these names are left out too. ``data_path`` is left out as typed; the
# identity holds its resolved form instead (``data_location``: ``./d`` and ``/abs/d`` are one root).
VOLATILE = {
    "device", "resume", "eval_only", "checkpoint", "overwrite", "run_name", "results_path",
    "data_path", "log_interval", "compile", "resident_data", "fold_bn", "fast_frozen_ops", "cache_features",
    "micro_batch", "recompute", "resolved", "allow_precision_change",
}  # fmt: skip

DATA_LOCATION = "data_location"  # the key of the resolved data root in RunConfig.identity()


# Settings added after runs had been made with their default behaviour (few-shot, the arithmetic):
# left out of the identity while unset, so those runs keep their folders (tests/test_help.py pins
# the folder names of the defaults). Options (common.options) are recorded only when set, so a new
# one needs no entry here; OLD_UNSET_OPTIONS are the option names that config.json files written
# before then hold as null, left out the same way so those files still name their folders.
LATER_SETTINGS = {"shots", "arithmetic"}
OLD_UNSET_OPTIONS = frozenset({"input_size", "rank", "mask_layers", "mask_patch", "mask_lr", "mask_decay", "warp_pivot", "gradient_rule"})
OPTIONS_KEY = "extra"  # config.json's key of the options (RunConfig.option_values), as runs have always been named

ARITHMETIC = "arithmetic"  # the key of the resolved device type and precision in RunConfig.identity()


# Settings whose help says results do not depend on them but which were part of the folder hash:
# held at their default (None) in the identity, so every value shares the default's folder (and
# the default's folder name is unchanged); a run made before with another value is found in its
# old folder through RunConfig.config_hash(legacy=True) (runner.run_dir.run_folder).
RESULT_NEUTRAL = ("eval_batch_size",)


def _identifying(key: str, value: Any, later: set | frozenset = LATER_SETTINGS) -> bool:
    return key not in VOLATILE and not (key in later and value is None)


def result_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The result-determining flags of a saved ``config.json`` ``config`` (or :meth:`RunConfig.to_dict`)."""
    settings = {k: None if k in RESULT_NEUTRAL else v for k, v in config.items() if _identifying(k, v)}
    settings[OPTIONS_KEY] = {k: v for k, v in config.get(OPTIONS_KEY, {}).items() if _identifying(k, v, OLD_UNSET_OPTIONS)}
    return settings


# Prompt initialisations moved from the global random state (drawn after the network was built)
# to their own generator, ``common.seeding.init_generator(seed, "prompt")``. That changed the
# initial prompt, hence the result, of runs whose start is random: ``--prompt-init randn`` and
# the prompts below, whose default start draws random numbers too (low-rank's ``A``, SMM's mask
# network; the same names on CNN and CLIP). Their identity gains INIT_SEEDING so their old run
# folders are not mixed with new results; zero-initialised runs draw nothing and keep their folders.
RANDOM_START_PROMPTS = frozenset({"lowrank", "smm"})
INIT_SEEDING = {"init_seeding": "per_part"}

# Augmented runs draw each sample's augmentation from its own stream (seed, epoch, sample index)
# since the per-sample streams came in, which changed their results: their identity holds the
# resolved recipe (``resolved["augment"]``, data.augment_recipes) and this scheme instead of the
# flag as spelled, so they got new folders and every spelling of one recipe shares one. Runs
# without augmentation keep their identity (tests/test_augment_vocabulary.py pins both).
AUGMENT_FLAGS = ("augment", "train_augment")  # the options (RunConfig.option_values) spelling the augmentation
AUGMENT_DRAWS = "per_sample"  # how augmented runs draw: one stream per (seed, epoch, sample index)


PRECISION_SETTINGS = ("precision", ARITHMETIC)  # what --allow-precision-change lets a resumed run change


def arithmetic_of(identity: dict[str, Any]) -> str:
    """What a run's identity says it computed in, as ``<device type>-<precision>`` (``cpu-fp32``)."""
    if identity.get(ARITHMETIC):
        return identity[ARITHMETIC]
    precision = identity.get("precision", "auto")
    return f"cpu-{'fp32' if precision == 'auto' else precision}"


def precision_change(saved: dict[str, Any], now: dict[str, Any], allowed: bool, checkpoint: Any) -> str | None:
    """Refuse to continue or evaluate ``checkpoint`` (identity ``saved``) in another arithmetic than
    it was computed in, unless ``allowed``; then the note to print (None: nothing changed).

    fp16 with loss scaling, bf16 and fp32 round differently, and so do a GPU's kernels and a CPU's:
    a run continued in another one is not the run its folder names.
    """
    if not saved:  # a checkpoint written without its settings is not checked
        return None
    before, after = arithmetic_of(saved), arithmetic_of(now)
    if before == after:
        return None
    if not allowed:
        raise UserError(
            f"checkpoint {checkpoint} was computed in {before}, this run computes in {after}; pass --device/--precision"
            f" to match, or --allow-precision-change to continue in {after} anyway"
        )
    return f"--allow-precision-change: checkpoint {checkpoint} was computed in {before}, continuing in {after}"


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
    # what the run computes in, as resolved on its device: "<device type>-<precision>" ("cuda-fp16"),
    # None on the CPU, where --precision (in the identity) already says it (auto is fp32 there).
    # Set by the runner (runner.devices.arithmetic); so a CUDA fp16 run and a CPU run of the same
    # flags get two folders, and the CPU runs made before this setting keep theirs
    arithmetic: str | None = None
    allow_precision_change: bool = False  # --resume / --eval-only a checkpoint computed in another arithmetic
    channels_last: bool = True
    compile: bool | str = False  # True: torch.compile's default mode; "max": max-autotune (runner.compile_modes)
    fold_bn: bool = True
    fast_frozen_ops: bool = True
    resident_data: bool | None = None
    micro_batch: int | str | None = None  # chunk size of a training step, "auto", or None: the whole batch at once
    recompute: bool = False  # recompute the frozen network's activations in the backward pass
    # paths and run control
    data_path: str | None = None
    results_path: str | None = None
    run_name: str | None = None
    resume: bool | str = False  # True: continue the run; "auto": continue it if the folder holds it, else start it
    eval_only: bool = False
    checkpoint: str | None = None
    overwrite: bool = False
    log_interval: int = 50
    # the options of the method's family, prompt and mapping (common.options), kept by name as
    # parsed: read them typed, ``config.options(AttrVROptions).top_k``; saved as config.json's "extra"
    option_values: dict[str, Any] = field(default_factory=dict)
    extra: InitVar[dict[str, Any] | None] = None  # config.json's name of option_values, accepted when building one
    # facts that follow from the settings above, filled while parsing by the method's family
    # (algorithms.methods.resolve_settings): saved in config.json, never part of the identity
    # since they are functions of it. "batch_dependent": whether what the run trains depends on
    # how a batch is split into chunks (batch norms in training mode, a random draw per forward call);
    # "augment": the training augmentation as a canonical recipe (data.augment_recipes), "none" for none
    resolved: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self, extra: dict[str, Any] | None) -> None:
        if extra:
            self.option_values = {**extra, **self.option_values}

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
        if "batch_dependent" not in self.resolved:
            raise ValueError("RunConfig.resolved has no batch_dependent: build the config with runner.config or algorithms.methods.resolve_settings")
        return bool(self.resolved["batch_dependent"])

    def options(self, cls: type[OptionsT]) -> OptionsT:
        """The typed options ``cls`` (a :class:`common.options.Options` dataclass) of this run."""
        return options_from(cls, self.option_values)

    def set_options(self, cls: type[Options], **values: Any) -> None:
        """Record option values of ``cls`` (a family's ``complete`` step fills what follows from other flags)."""
        unknown = set(values) - {f.name for f, _meta in option_fields(cls)}
        if unknown:
            raise KeyError(f"{cls.__name__} has no option {', '.join(sorted(unknown))}")
        self.option_values.update(values)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values[OPTIONS_KEY] = values.pop("option_values")
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        """The settings of :meth:`to_dict` (``config.json``) back, ignoring keys this version does not know."""
        names = {f.name for f in fields(cls)} | {OPTIONS_KEY}
        return cls(**{k: v for k, v in values.items() if k in names})

    def identity(self) -> dict[str, Any]:
        """The settings that determine the result, with where the data is read (``data_location``)."""
        settings = result_settings(self.to_dict())
        augment = self.augment_settings()
        if augment:  # named by the resolved recipe, however --augment was spelt
            settings[OPTIONS_KEY] = {k: v for k, v in settings[OPTIONS_KEY].items() if k not in AUGMENT_FLAGS}
        return {**settings, **augment, **self.chunking_settings(), **self.seeding_settings(), DATA_LOCATION: self.data_location}

    def augment_settings(self) -> dict[str, Any]:
        """The resolved augmentation recipe and how it is drawn, for an augmented run; else nothing.

        A config built in code without :func:`algorithms.methods.resolve_settings` has no resolved
        recipe and is named as without augmentation (the command line always resolves it)."""
        recipe = self.resolved.get("augment", "none")
        return {} if recipe == "none" else {"augment": recipe, "augment_draws": AUGMENT_DRAWS}

    def seeding_settings(self) -> dict[str, Any]:
        """:data:`INIT_SEEDING` where the initial prompt is random (so its result changed when
        initialisations moved to their own generators), else nothing."""
        random_start = self.prompt_init == "randn" or self.prompt in RANDOM_START_PROMPTS
        return dict(INIT_SEEDING) if random_start else {}

    def chunking_settings(self) -> dict[str, Any]:
        """``micro_batch`` where it changes what the run trains (:attr:`batch_dependent`), else nothing."""
        return {"micro_batch": self.micro_batch} if self.micro_batch is not None and self.batch_dependent else {}

    def config_hash(self, legacy: bool = False) -> str:
        """``legacy``: the hash before the :data:`RESULT_NEUTRAL` settings left it (the folder of an older run)."""
        identity = self.identity()
        if legacy:
            identity.update({k: getattr(self, k) for k in RESULT_NEUTRAL})
        blob = json.dumps(identity, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:8]

    @property
    def run_id(self) -> str:
        return self.run_name or f"seed{self.seed}-{self.config_hash()}"

    def run_path(self) -> Path:
        """``<results>/<method>/<dataset>/<network>/<run id>``."""
        # a model name such as CLIP's ViT-B/32 must stay one folder
        return self.results_root / self.method / self.dataset / self.network.replace("/", "-") / self.run_id
