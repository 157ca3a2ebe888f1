"""The bi-level training loop shared by every method.

Each epoch: (lower level) refit the label mapping from source-prediction statistics when the
mapping asks for it, then (upper level) one epoch of training with the mapping fixed, then a test
evaluation. Which parts of the model train, and how inputs are prepared, is the method's business
(:mod:`algorithms.methods`); this loop only sees a :class:`~models.reprogrammer.ReprogrammingModel`.
What it writes goes through :class:`~algorithms.outputs.RunOutputs` (the runner's run folder).

Speed: batches arrive as uint8 already on the device; metrics stay on the device and are reduced
once per epoch (no per-step host sync beyond the progress bar's every ``log_interval`` steps);
statistics for the mapping are accumulated on the device. A method whose frozen part sees the
same inputs every epoch can compute that part's outputs once (:attr:`Experiment.precompute`)
and train on those instead.

Memory: with ``--micro-batch N`` a training step runs in chunks of at most N samples whose
gradients add up to the whole batch's before the one optimizer step
(:mod:`algorithms.micro_batching`); the mapping pass and evaluation then run at most N at once.
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from algorithms import micro_batching
from algorithms.mappings.base import accumulate_statistic, top1_one_hot
from algorithms.outputs import BEST, CHECKPOINT, PredictionCounts, RunOutputs, mapped_sources
from algorithms.runtime import Runtime
from algorithms.settings import DATA_LOCATION, RunConfig
from common.errors import UserError
from common.seeding import epoch_generator
from data.loader import BatchLoader, fits_on_device, to_float01
from data.registry import TargetData
from data.tensors import FeatureSet, ImageTensorSet
from models.reprogrammer import ReprogrammingModel

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
BatchFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Precomputed:
    """What a precompute step hands back: the inputs it computed once and the model that trains on them."""

    # shares its trainable modules, under the same state-dict names, with Experiment.model, so
    # checkpoints of either load into the other
    model: ReprogrammingModel
    data: TargetData  # splits of FeatureSet
    info: dict = field(default_factory=dict)  # merged into Experiment.info (e.g. how long it took)


# (data, runtime, eval batch size) -> Precomputed; runs once, before the loaders are built
Precompute = Callable[[TargetData, Runtime, int], Precomputed]


@dataclass
class Experiment:
    """What a method hands the engine: the model, the names of its source outputs, extras."""

    model: ReprogrammingModel
    source_names: list[str]
    train_augment: Augment | None = None  # on-device augmentation, training batches only
    # optimizer groups (default: every trainable parameter); a group may set its own "lr", and
    # "scheduled": False keeps its learning rate constant after warmup instead of following --scheduler
    param_groups: list[dict] | None = None
    info: dict = field(default_factory=dict)  # method facts for config.json / results.json
    precompute: Precompute | None = None  # replace the images by what a frozen part computes from them
    # called right before every optimizer step, gradients unscaled and summed over chunks (ACAVP's
    # gradient normalisation on CLIP); the engine package's Experiment.optimizer_hooks
    optimizer_hooks: list[Callable[[torch.optim.Optimizer], None]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Optimizer and schedule


def build_optimizer(config: RunConfig, groups: list[dict]) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    raise UserError(f"unknown optimizer {config.optimizer!r}; choose adam or sgd")


def lr_factor(config: RunConfig, steps_per_epoch: int, scheduled: bool = True) -> Callable[[int], float]:
    """Learning-rate multiplier per optimizer step: warmup, then multistep/cosine/constant.

    ``multistep`` decays by ``gamma`` at the epochs ``int(m * epochs)`` (the paper: 50% and 72%),
    exactly as ``MultiStepLR`` stepped once per epoch; ``cosine`` decays per step to zero.
    ``scheduled=False``: warmup, then constant (a group that the schedule leaves alone).
    """
    total = max(1, config.epochs * steps_per_epoch)
    warmup = config.warmup_steps
    milestones = [int(m * config.epochs) for m in config.milestones]
    if config.scheduler not in ("multistep", "cosine", "constant"):
        raise UserError(f"unknown scheduler {config.scheduler!r}; choose multistep, cosine or constant")

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if not scheduled:
            return 1.0
        if config.scheduler == "multistep":
            epoch = step // steps_per_epoch
            return config.gamma ** sum(epoch >= m for m in milestones)
        if config.scheduler == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return factor


def schedule_warnings(config: RunConfig) -> list[str]:
    """What the learning-rate schedule does that a user would not expect from the flags.

    With few epochs the multistep milestones ``int(m * epochs)`` can fall on epoch 0 (for
    ``--epochs 1``, both of the paper's), so the run never trains at ``--lr``; the official code
    does the same, silently.
    """
    if config.scheduler != "multistep":
        return []
    at_start = [m for m in config.milestones if int(m * config.epochs) == 0]
    if not at_start:
        return []
    lr = config.lr * config.gamma ** len(at_start)
    return [
        f"with --epochs {config.epochs} the learning-rate milestone{'s' if len(at_start) > 1 else ''} "
        f"{' '.join(f'{m:g}' for m in at_start)} fall{'' if len(at_start) > 1 else 's'} on epoch 0: every step trains at lr {lr:g}, "
        f"not --lr {config.lr:g}; use more epochs, or --scheduler constant for a smoke test"
    ]
def evaluation_batch_size(config: RunConfig, batch_size: int) -> int:
    """Samples per forward pass without gradients: ``--eval-batch-size`` (twice the batch by
    default), at most ``--micro-batch`` when that is a number."""
    size = config.eval_batch_size or 2 * batch_size
    return min(size, config.micro_batch) if isinstance(config.micro_batch, int) else size


# ---------------------------------------------------------------------------------------------
# Reported accuracies

PROTOCOL = {
    "best_test_acc": "paper protocol: the highest test accuracy over all epochs (epoch chosen on test; best.pth)",
    "final_test_acc": "test accuracy after the last epoch",
    "val_selected_test_acc": "test accuracy at the epoch with the highest validation accuracy (ties: earliest epoch)",
}


def val_selection(history: list[dict]) -> dict:
    """Test accuracy of the epoch chosen on validation (earliest of ties); empty without a val split."""
    rows = [r for r in history if r.get("val_acc") is not None]
    if not rows:
        return {}
    best = max(rows, key=lambda r: (r["val_acc"], -r["epoch"]))
    return {"val_selected_test_acc": best["test_acc"], "val_selected_epoch": best["epoch"], "best_val_acc": best["val_acc"]}


@torch.no_grad()
def top1_accuracy(model, batches, runtime: Runtime, source_counts: torch.Tensor | None = None) -> float:
    """Top-1 accuracy (%) of ``model`` over uint8 ``(images, labels)`` batches, summed across ranks.

    With ``source_counts [S, K]`` the model must accept ``return_source=True``; the source top-1
    prediction of every sample is then counted against its label (the mapping heatmap). The
    network body runs at ``--eval-precision``; logits and the mapping are float32 in any case.
    """
    correct = torch.zeros((), device=runtime.device, dtype=torch.long)
    total = torch.zeros((), device=runtime.device, dtype=torch.long)
    for images, labels in batches:
        with runtime.eval_autocast():
            if source_counts is None:
                logits = model(to_float01(images))
            else:
                logits, source = model(to_float01(images), return_source=True)
                accumulate_statistic(source_counts, top1_one_hot(source.float()), labels)
        correct += (logits.argmax(dim=1) == labels).sum()
        total += labels.shape[0]
    if source_counts is not None:
        runtime.all_reduce_sum(source_counts)
    totals = runtime.all_reduce_sum(torch.stack([correct, total]))
    return 100.0 * float(totals[0]) / max(1, int(totals[1]))


@torch.no_grad()
def stacked_outputs(
    fn: BatchFn, loader: BatchLoader, runtime: Runtime, resident: bool | None = None, precision: str | None = None, desc: str | None = None
) -> torch.Tensor:
    """``fn`` of every batch of ``loader``, in order, as one float32 tensor; computed at ``precision``
    (default: the run's training precision).

    It stays on the device where it fits (:func:`~data.loader.fits_on_device`, ``resident`` forces
    the answer); otherwise it fills host memory (pinned for CUDA) batch by batch. With ``desc``,
    a progress bar (main process, terminal only).
    """
    out, start = None, 0
    batches = loader if desc is None else tqdm(loader, desc=desc, total=len(loader), leave=False, disable=not runtime.is_main or None)
    for images, _ in batches:
        with runtime.autocast(precision):
            y = fn(to_float01(images)).float()
        if out is None:
            shape = (loader.shard_size, *y.shape[1:])
            on_device = fits_on_device(math.prod(shape) * y.element_size(), runtime.device, resident)
            pin = not on_device and runtime.device.type == "cuda"
            out = torch.empty(shape, device=runtime.device if on_device else "cpu", pin_memory=pin)
        out[start : start + len(y)].copy_(y)
        start += len(y)
    if out is None:
        raise UserError("cannot precompute outputs of an empty split")
    return out


def precompute_inputs(
    fn: BatchFn, data: TargetData, runtime: Runtime, batch_size: int, resident: bool | None = None, desc: str = "precompute"
) -> TargetData:
    """``data`` with each split's images replaced by ``fn`` of them, computed once by every rank
    (training batches are drawn from the whole set, so each rank needs all of it). The training
    split is computed at the training precision, the others at the evaluation precision, as the
    engine would compute them each epoch."""

    def outputs(split: ImageTensorSet, name: str, precision: str | None) -> FeatureSet:
        loader = BatchLoader(split, batch_size, runtime.device, shuffle=False, resident=resident)
        return FeatureSet(stacked_outputs(fn, loader, runtime, resident, precision, desc=f"{desc} ({name})"), split.labels)

    evaluated = runtime.eval_precision or runtime.precision
    val = None if data.val is None else outputs(data.val, "val", evaluated)
    return replace(data, train=outputs(data.train, "train", runtime.precision), test=outputs(data.test, "test", evaluated), val=val)


# ---------------------------------------------------------------------------------------------
# The data a checkpoint was trained on


def data_identity(data: TargetData) -> dict:
    """What a checkpoint records of its data: where it was read and what was read."""
    return {"location": data.location, "fingerprint": data.fingerprint}


def check_same_data(saved: dict | None, data: TargetData, checkpoint) -> None:
    """Refuse to continue or evaluate ``checkpoint`` on data other than it was trained on.

    The fingerprint decides (:mod:`data.fingerprint`): the same samples read from another place
    (a copied dataset) pass. Checkpoints written without a fingerprint are not checked.
    """
    if not saved or not saved.get("fingerprint") or not data.fingerprint or saved["fingerprint"] == data.fingerprint:
        return
    raise UserError(
        f"checkpoint {checkpoint} was trained on other data: {saved.get('location')} ({saved['fingerprint']}), "
        f"this run reads {data.location} ({data.fingerprint}); pass the --data-path it was trained on, or start a new run"
    )


# ---------------------------------------------------------------------------------------------
# The trainer


class Trainer:
    def __init__(self, config: RunConfig, experiment: Experiment, data: TargetData, runtime: Runtime, outputs: RunOutputs) -> None:
        batch = data.batch_size
        eval_batch = evaluation_batch_size(config, batch)
        model = experiment.model
        if experiment.precompute is not None:
            done = experiment.precompute(data, runtime, eval_batch)
            model, data = done.model, done.data
            experiment.info.update(done.info)
        self.config, self.experiment, self.data, self.runtime, self.outputs = config, experiment, data, runtime, outputs
        self.device = runtime.device
        self.model = model.to(self.device)
        self.mapping = self.model.label_mapping
        if config.compile:
            self.model.network.compile()
        common = dict(device=self.device, seed=config.seed, rank=runtime.rank, world_size=runtime.world_size, resident=config.resident_data)
        self.train_loader = BatchLoader(data.train, batch, shuffle=True, **common)
        self.chunk = self._chunk_size(batch)  # samples per forward pass of a training step
        if isinstance(config.micro_batch, str):  # auto: the probed chunk bounds evaluation too
            eval_batch = min(eval_batch, self.chunk)
        self.stats_loader = BatchLoader(data.train, eval_batch, shuffle=False, **common)
        self.test_loader = BatchLoader(data.test, eval_batch, shuffle=False, **common)
        self.val_loader = BatchLoader(data.val, eval_batch, shuffle=False, **common) if data.val is not None else None
        if config.micro_batch is not None:
            experiment.info["micro_batch"] = self.chunk
        if config.recompute:
            experiment.info["stages_recomputed"] = experiment.model.rewrites.get("stages_recomputed", 0)
        params = self.model.trainable_parameters()
        self.num_trainable = sum(p.numel() for p in params)
        groups = experiment.param_groups or [{"params": params}]
        self.optimizer = build_optimizer(config, groups)
        factors = [lr_factor(config, len(self.train_loader), g.get("scheduled", True)) for g in self.optimizer.param_groups]
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factors)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=runtime.precision == "fp16")
        self.train_model = self.model
        if runtime.distributed and params:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # a frozen network's buffers are identical on every rank: re-broadcast rank 0's buffers each
            # step only when a trained module keeps some (batch-norm statistics of a mask network, say)
            self.train_model = DistributedDataParallel(self.model, device_ids=ids, broadcast_buffers=self.model.trains_buffers)
        self.history: list[dict] = []
        self.best = {"test_acc": None, "epoch": None}
        self.pending_stats: torch.Tensor | None = None  # --lm-source train: counts from the last epoch
        self.start_epoch = 0
        self.show_bars = runtime.is_main

    # -- micro-batching ------------------------------------------------------------------------
    def _note(self, text: str) -> None:
        if self.runtime.is_main:
            print(text, flush=True)

    def _chunk_size(self, batch: int) -> int:
        """``--micro-batch`` resolved to the most samples a training forward pass takes."""
        requested = self.config.micro_batch
        if requested is None:
            return batch
        if requested == "auto":
            self.model.train()
            if self.config.batch_dependent or micro_batching.batch_statistics_modules(self.model):
                raise UserError(
                    f"--micro-batch auto would make {self.config.method}'s result depend on the device's memory"
                    " (what it trains depends on how a batch is split); give a number"
                )
            memory = micro_batching.memory_signal(self.device)
            if memory is None:
                self._note(f"--micro-batch auto: no memory probe on {self.device.type}; each batch of {batch} runs whole")
                return batch
            chunk = micro_batching.largest_fitting_chunk(self._probe_size(batch), micro_batching.probe_fits(self._probe_step, memory))
            self._note(f"--micro-batch auto: chunks of {chunk} for batches of {batch} (largest that fits on {self.device}, probed)")
            return chunk
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise UserError(f"--micro-batch must be a positive number of samples or auto, got {requested!r}")
        if requested < batch:
            self._check_batch_statistics(requested, batch)
        return requested

    def _check_batch_statistics(self, chunk: int, batch: int) -> None:
        """Chunks change what batch statistics see: allowed only where the method declares it."""
        self.model.train()
        found = micro_batching.batch_statistics_modules(self.model)
        if self.config.batch_dependent:
            self._note(
                f"--micro-batch {chunk}: what {self.config.method} trains depends on how a batch is split"
                f"{' (batch norms in training mode)' if found else ''}, so chunks of {chunk} give another result"
                f" than batches of {batch}; --micro-batch is part of this run's settings"
            )
        elif found:
            raise UserError(
                f"--micro-batch {chunk} would change this model's result: {', '.join(found[:3])} normalise over the batch in"
                f" training mode, and its method does not declare that (register_family(batch_dependent=...))"
            )

    def _probe_size(self, batch: int) -> int:
        return min(batch, self.train_loader.shard_size)

    def _probe_step(self, n: int) -> None:
        """One training forward and backward pass on ``n`` samples, leaving no trace (for the auto probe)."""
        images, labels = next(iter(self.train_loader))
        self.model.train()
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                with self.runtime.autocast():
                    target_logits = self.model(to_float01(images[:n]))
                F.cross_entropy(target_logits.float(), labels[:n]).backward()
        finally:
            self.model.zero_grad(set_to_none=True)

    def _grad_sync(self, last_chunk: bool) -> contextlib.AbstractContextManager:
        """Under DDP the gradients are all-reduced once per step: with the last chunk's backward."""
        if last_chunk or not isinstance(self.train_model, DistributedDataParallel):
            return contextlib.nullcontext()
        return self.train_model.no_sync()

    # -- state ---------------------------------------------------------------------------------
    def state(self, epoch: int) -> dict:
        return {
            "epoch": epoch,
            "model": self.model.trainable_state(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "history": self.history,
            "best": self.best,
            "pending_stats": None if self.pending_stats is None else self.pending_stats.cpu(),
            "config": self.config.identity(),
            "data": data_identity(self.data),
        }

    def load_model_state(self, state: dict, source: str) -> None:
        expected = set(self.model.trainable_state())
        got = set(state)
        if expected != got:
            missing, unexpected = sorted(expected - got)[:3], sorted(got - expected)[:3]
            raise UserError(f"checkpoint {source} does not match this model (missing {missing}, unexpected {unexpected})")
        try:
            self.model.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            raise UserError(f"checkpoint {source} does not match this model: {str(exc).splitlines()[-1].strip()}") from exc

    def resume(self) -> None:
        ckpt = self.outputs.load(CHECKPOINT)
        path = self.outputs.location(CHECKPOINT)
        saved, now = ckpt.get("config", {}), self.config.identity()
        # where the data is read may differ (a pinned --run-name, a moved copy): what was read is checked below
        differing = sorted(k for k in set(saved) | set(now) if k != DATA_LOCATION and saved.get(k) != now.get(k))
        if differing:
            raise UserError(f"checkpoint {path} was written with other settings ({', '.join(differing)}); start a new run instead")
        check_same_data(ckpt.get("data"), self.data, path)
        self.load_model_state(ckpt["model"], str(path))
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            self.scaler.load_state_dict(ckpt["scaler"])
        except (KeyError, ValueError, RuntimeError) as exc:
            raise UserError(f"checkpoint {path} has an incompatible optimizer state ({exc})") from exc
        self.history, self.best = list(ckpt["history"]), dict(ckpt["best"])
        pending = ckpt.get("pending_stats")
        self.pending_stats = None if pending is None else pending.to(self.device)
        self.start_epoch = int(ckpt["epoch"])
        # a write that failed after the epoch's metrics but before its checkpoint left a row ahead
        self.outputs.write_metrics(self.history)

    # -- phases --------------------------------------------------------------------------------
    def _sync(self) -> None:
        self.runtime.synchronize()

    def _bar(self, loader, desc: str):
        return tqdm(loader, desc=desc, total=len(loader), leave=False, dynamic_ncols=True, disable=not self.show_bars or None)

    def _new_stats(self) -> torch.Tensor:
        return torch.zeros(self.mapping.num_source, self.mapping.num_target, device=self.device)

    @torch.no_grad()
    def gather_statistics(self, epoch: int) -> torch.Tensor:
        """Lower level: the statistics matrix ``[S, K]`` of the current prompt on the training set."""
        self.model.eval()
        stats = self._new_stats()
        for images, labels in self._bar(self.stats_loader, f"epoch {epoch + 1} mapping"):
            with self.runtime.eval_autocast():
                source = self.model.source_logits(to_float01(images))
            accumulate_statistic(stats, self.mapping.source_statistic(source.float()), labels)
        return self.runtime.all_reduce_sum(stats)

    def refresh_mapping(self, epoch: int) -> int | None:
        """Refit the mapping if due; returns how many targets changed source (None at the first fit)."""
        previous = {k: v.clone() for k, v in self.mapping.state_dict().items()}
        if self.config.lm_source == "train" and self.pending_stats is not None:
            stats = self.pending_stats
        else:
            stats = self.gather_statistics(epoch)
        self.pending_stats = None
        self.mapping.fit(stats)
        return self.mapping.changes_since(previous) if epoch > 0 else None

    def train_epoch(self, epoch: int) -> dict:
        """Upper level: one pass over the training set with the mapping fixed."""
        self.model.train()
        self.train_loader.set_epoch(epoch)
        augment_gen = epoch_generator(self.config.seed, epoch, stream=1)
        collect = (
            self.config.lm_source == "train" and epoch + 1 < self.config.epochs and self.mapping.refresh_due(epoch + 1)
        )
        stats = self._new_stats() if collect else None
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        bar = self._bar(self.train_loader, f"epoch {epoch + 1} train")
        for step, (images, labels) in enumerate(bar):
            x = to_float01(images)
            if self.experiment.train_augment is not None:  # drawn for the whole batch, before it is split
                x = self.experiment.train_augment(x, augment_gen)
            self.optimizer.zero_grad(set_to_none=True)
            chunks = list(zip(x.split(self.chunk), labels.split(self.chunk)))
            batch_loss = torch.zeros((), device=self.device)
            for i, (xc, yc) in enumerate(chunks):
                # the batch loss is the mean over the batch: each chunk's mean counts n_chunk / n_batch
                weight = yc.shape[0] / labels.shape[0]
                with self._grad_sync(last_chunk=i == len(chunks) - 1):
                    with self.runtime.autocast():
                        target_logits, source_logits = self.train_model(xc, return_source=True)
                    loss = F.cross_entropy(target_logits.float(), yc)
                    self.scaler.scale(loss * weight if len(chunks) > 1 else loss).backward()
                with torch.no_grad():
                    loss_sum += loss.detach() * yc.shape[0]
                    batch_loss += loss.detach() * weight
                    correct += (target_logits.argmax(dim=1) == yc).sum()
                    if stats is not None:
                        accumulate_statistic(stats, self.mapping.source_statistic(source_logits.detach().float()), yc)
            if self.experiment.optimizer_hooks:  # optimizer hooks see the true (unscaled) gradients
                self.scaler.unscale_(self.optimizer)
                for hook in self.experiment.optimizer_hooks:
                    hook(self.optimizer)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            seen += labels.shape[0]
            if self.show_bars and step % self.config.log_interval == 0:
                bar.set_postfix(loss=f"{batch_loss.item():.3f}")
        totals = self.runtime.all_reduce_sum(torch.stack([loss_sum, correct.to(loss_sum.dtype), torch.tensor(float(seen), device=self.device)]))
        if stats is not None:
            self.pending_stats = self.runtime.all_reduce_sum(stats)
        count = max(1.0, float(totals[2]))
        return {"train_loss": float(totals[0]) / count, "train_acc": 100.0 * float(totals[1]) / count, "train_samples": int(count)}

    def evaluate(self, loader: BatchLoader, desc: str = "test", source_counts: torch.Tensor | None = None) -> float:
        """Accuracy in %; ``source_counts [S, K]``, if given, accumulates source top-1 vs target label."""
        self.model.eval()
        return top1_accuracy(self.model, self._bar(loader, desc), self.runtime, source_counts)

    # -- the loop ------------------------------------------------------------------------------
    def fit(self) -> dict:
        cfg_ = self.config
        # on resume, drop TensorBoard events of epochs that the checkpoint does not contain
        self.outputs.start_logging(self.start_epoch)
        for epoch in range(self.start_epoch, cfg_.epochs):
            lr = self.optimizer.param_groups[0]["lr"]
            self._sync()
            t0 = time.perf_counter()
            changes = self.refresh_mapping(epoch) if self.mapping.refresh_due(epoch) else None
            self._sync()
            t1 = time.perf_counter()
            train = self.train_epoch(epoch)
            self._sync()
            t2 = time.perf_counter()
            test_counts = self._new_stats()  # for the mapping heatmap (runner/snapshots.py)
            test_acc = self.evaluate(self.test_loader, f"epoch {epoch + 1} test", source_counts=test_counts)
            val_acc = self.evaluate(self.val_loader, f"epoch {epoch + 1} val") if self.val_loader is not None else None
            self._sync()
            t3 = time.perf_counter()
            row = {
                "epoch": epoch + 1,
                **train,
                "test_acc": test_acc,
                "val_acc": val_acc,
                "lr": lr,
                "mapping_changes": changes,
                "mapping_seconds": t1 - t0,
                "train_seconds": t2 - t1,
                "eval_seconds": t3 - t2,
                "epoch_seconds": t3 - t0,
                "train_images_per_s": train["train_samples"] / max(1e-9, t2 - t1),
            }
            self.history.append(row)
            improved = self.best["test_acc"] is None or test_acc > self.best["test_acc"]
            if improved:
                self.best = {"test_acc": test_acc, "epoch": epoch + 1}
            self._write_epoch(epoch, row, improved, test_counts)
        results = self.summary()
        self.outputs.write_json("results.json", results)
        self.outputs.close()
        return results

    def _write_epoch(self, epoch: int, row: dict, improved: bool, test_counts: torch.Tensor) -> None:
        """Every file of the epoch, the checkpoint last: a write that fails (disk full) leaves the
        previous checkpoint, from which ``--resume`` redoes this epoch and rewrites them all."""
        state = self.state(epoch + 1)
        if improved:
            best = {"epoch": epoch + 1, "model": state["model"], "test_acc": row["test_acc"], "config": state["config"], "data": state["data"]}
            self.outputs.save(BEST, best)
        self.outputs.write_metrics(self.history)
        self.outputs.write_mapping(epoch + 1, self.mapping.describe(self.experiment.source_names, self.data.class_names))
        self.outputs.log_scalars(
            epoch + 1,
            {
                "train/loss": row["train_loss"],
                "train/acc": row["train_acc"],
                "test/acc": row["test_acc"],
                "val/acc": row["val_acc"],
                "lr": row["lr"],
                "mapping/changes": row["mapping_changes"],
                "time/epoch_seconds": row["epoch_seconds"],
                "time/train_images_per_s": row["train_images_per_s"],
            },
        )
        if self.runtime.is_main:
            changes = "" if row["mapping_changes"] is None else f"  mapping changes {row['mapping_changes']}"
            val = "" if row["val_acc"] is None else f"  val {row['val_acc']:.2f}%"
            tqdm.write(
                f"epoch {row['epoch']}/{self.config.epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.2f}%"
                f"  test {row['test_acc']:.2f}% (best {self.best['test_acc']:.2f}%){val}  lr {row['lr']:.2e}{changes}"
                f"  [{row['epoch_seconds']:.1f}s: mapping {row['mapping_seconds']:.1f} train {row['train_seconds']:.1f}"
                f" eval {row['eval_seconds']:.1f}; {row['train_images_per_s']:.0f} img/s]"
            )
        self._write_snapshots(epoch + 1, test_counts)
        self.outputs.save(CHECKPOINT, state)

    def _write_snapshots(self, epoch: int, test_counts: torch.Tensor) -> None:
        if not self.outputs.enabled:  # only rank 0 writes
            return
        S, K = self.mapping.num_source, self.mapping.num_target
        counts = PredictionCounts(
            epoch, test_counts.round().long().cpu().numpy(), mapped_sources(self.mapping, S, K),
            list(self.experiment.source_names), list(self.data.class_names),
        )  # fmt: skip
        self.outputs.write_snapshots(self.model, epoch, self.config.epochs, counts)

    def summary(self) -> dict:
        last = self.history[-1] if self.history else {}
        return {
            "method": self.config.method,
            "dataset": self.config.dataset,
            "network": self.config.network,
            "seed": self.config.seed,
            "epochs": len(self.history),
            "final_test_acc": last.get("test_acc"),
            "best_test_acc": self.best["test_acc"],
            "best_epoch": self.best["epoch"],
            **val_selection(self.history),
            "protocol": PROTOCOL,
            "trainable_params": self.num_trainable,
            "data_sizes": self.data.sizes(),
            "total_seconds": sum(r["epoch_seconds"] for r in self.history),
            "mean_epoch_seconds": (sum(r["epoch_seconds"] for r in self.history) / len(self.history)) if self.history else None,
            **self.experiment.info,
        }
