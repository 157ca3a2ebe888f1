"""The epochs: hooks (the mapping refit), training with the family's step, evaluation, checkpoints.

Each epoch: the family's hooks run (lower level: ILM's mapping refit), then one pass of
training with the step the family owns (upper level), then test (and validation) accuracy.
What the parts compute belongs to the :class:`~algorithms.engine.experiment.Experiment`; when
and where it runs (chunks, ranks, precision, scaling, checkpoints) belongs here. Writes go
through :class:`~algorithms.outputs.RunOutputs` (the runner's run folder).

Speed: batches arrive as uint8 already on the device; metrics stay on the device and are reduced
once per epoch; statistics are accumulated on the device. Memory: with ``--micro-batch N`` a
training step runs in chunks of at most N samples whose gradients add up to the whole batch's
before the one optimizer step (:mod:`algorithms.engine.chunking`).
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import torch
from torch.nn.parallel import DistributedDataParallel

from algorithms.engine import checkpoint as ckpt
from algorithms.engine.evaluation import evaluation_batch_size, top1_accuracy
from algorithms.engine.experiment import Experiment
from algorithms.engine.guard import NumericalGuard, checkpoint_kept, likely_cause
from algorithms.engine.hooks import EpochContext, MappingRefit
from algorithms.engine.interruption import EpochProgress, stoppable_pass
from algorithms.engine.loaders import build_loaders
from algorithms.engine.reporting import epoch_line, epoch_scalars, prediction_counts, run_summary
from algorithms.engine.schedule import build_optimizer, build_scheduler
from algorithms.outputs import BEST, CHECKPOINT, RunOutputs
from algorithms.runtime import Runtime, compile_options
from algorithms.settings import RunConfig
from common import preemption, progress
from common.seeding import epoch_generator
from data.augment_draws import AugmentDraws
from data.loader import BatchLoader, to_float01
from data.registry import TargetData


class Trainer:
    def __init__(self, config: RunConfig, experiment: Experiment, data: TargetData, runtime: Runtime, outputs: RunOutputs) -> None:
        model = experiment.model
        if experiment.precompute is not None:
            done = experiment.precompute(data, runtime, evaluation_batch_size(config, data.batch_size))
            model, data = done.model, done.data
            experiment.info.update(done.info)
        self.config, self.experiment, self.data, self.runtime, self.outputs = config, experiment, data, runtime, outputs
        self.device = runtime.device
        self.model = model.to(self.device)
        self.mapping = self.model.label_mapping
        self.step, self.hooks = experiment.step, list(experiment.hooks)
        compile_kwargs = compile_options(config.compile)  # --compile [max]
        if compile_kwargs is not None:
            self.model.network.compile(**compile_kwargs)
        self.show_bars = runtime.is_main
        loaders = build_loaders(config, self.model, self.step, data, runtime, self._note, experiment.info)
        self.train_loader, self.stats_loader, self.test_loader, self.val_loader = loaders.train, loaders.stats, loaders.test, loaders.val
        self.chunk = loaders.chunk
        if config.recompute:
            experiment.info["stages_recomputed"] = experiment.model.rewrites.get("stages_recomputed", 0)
        params = self.model.trainable_parameters()
        self.num_trainable = sum(p.numel() for p in params)
        self.optimizer = build_optimizer(config, experiment.param_groups or [{"params": params}])
        self.scheduler = build_scheduler(config, self.optimizer, len(self.train_loader))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=runtime.precision == "fp16")
        self.train_model = self.model
        if runtime.distributed and params:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # a frozen network's buffers are identical on every rank: re-broadcast rank 0's buffers each
            # step only when a trained module keeps some (batch-norm statistics of a mask network, say)
            self.train_model = DistributedDataParallel(self.model, device_ids=ids, broadcast_buffers=self.model.trains_buffers)
        self.context = EpochContext(self.model, runtime, config, self.stats_loader, self._pass_bar)
        self.history: list[dict] = []
        self.best = {"test_acc": None, "epoch": None}
        self.start_epoch = 0
        self.trained_parameters = params
        self.guard = NumericalGuard(self.device, scaled=self.scaler.is_enabled())
        self.partial: EpochProgress | None = None  # an epoch stopped on request, from --resume
        self._epoch_entries: tuple[dict, float] = ({}, 0.0)  # the running epoch's hook entries and their seconds
        # polled after every optimizer step (under torchrun every --log-interval steps, all ranks
        # together): a signal's name stops the run with an exact mid-epoch checkpoint (SIGTERM/SIGUSR1
        # through common.preemption)
        self.stop_requested: Callable[[], str | None] = self._stop_signal

    def _stop_signal(self) -> str | None:
        """The stop signal's name, if one arrived (on any rank: the ranks agree, costing one all-reduce)."""
        return preemption.agreed(preemption.requested())  # the ranks agree, or one would wait for the others forever

    def _note(self, text: str) -> None:
        if self.runtime.is_main:
            print(text, flush=True)

    def _bar(self, loader, desc: str):
        return progress.bar(loader, desc=desc, total=len(loader), unit="batch", enabled=self.show_bars)

    def _pass_bar(self, loader, desc: str):  # a no-grad pass: stops before its next batch on request
        return stoppable_pass(self._bar(loader, desc), loader, desc)

    def _grad_sync(self, last_chunk: bool) -> contextlib.AbstractContextManager:
        """Under DDP the gradients are all-reduced once per step: with the last chunk's backward."""
        if last_chunk or not isinstance(self.train_model, DistributedDataParallel):
            return contextlib.nullcontext()
        return self.train_model.no_sync()

    # -- the mapping refit, by name (the default hook) -----------------------------------------
    @property
    def mapping_refit(self) -> MappingRefit | None:
        return next((h for h in self.hooks if isinstance(h, MappingRefit)), None)

    def gather_statistics(self, epoch: int) -> torch.Tensor:
        """The mapping's statistics ``[S, K]`` of the current prompt on the training set."""
        return (self.mapping_refit or MappingRefit()).gather_statistics(self.context, epoch)

    def refresh_mapping(self, epoch: int) -> int | None:
        """Refit the mapping now; how many targets changed source (None at the first fit)."""
        return self.mapping_refit.refit(self.context, epoch)

    @property
    def pending_stats(self) -> torch.Tensor | None:
        return self.mapping_refit.pending

    # -- state ---------------------------------------------------------------------------------
    def state(self, epoch: int, progress: EpochProgress | None = None) -> dict:
        """The checkpoint after ``epoch`` finished epochs, or inside the next one with ``progress``."""
        state = {
            "epoch": epoch,
            "model": self.model.trainable_state(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "history": self.history,
            "best": self.best,
            "config": self.config.identity(),
            "data": ckpt.data_identity(self.data),
        }
        for hook in self.hooks:
            state.update(hook.state_dict())
        if progress is not None:
            state["epoch_progress"] = progress.state_dict()
        return state

    def load_model_state(self, state: dict, source: str) -> None:
        ckpt.load_model_state(self.model, state, source)

    def resume(self) -> None:
        saved = self.outputs.load(CHECKPOINT)
        path = str(self.outputs.location(CHECKPOINT))
        precision_note = ckpt.check_same_settings(saved, self.config, path)
        if precision_note:
            self._note(precision_note)
        ckpt.check_same_data(saved.get("data"), self.data, path)
        ckpt.load_model_state(self.model, saved["model"], path)
        # fp16's loss scale carries over only between fp16 runs
        keep_scale = not (precision_note and bool(saved["scaler"]) != self.scaler.is_enabled())
        ckpt.load_optimization_state(saved, self.optimizer, self.scheduler, self.scaler if keep_scale else None, path)
        self.history, self.best = list(saved["history"]), dict(saved["best"])
        for hook in self.hooks:
            hook.load_state_dict(saved, self.device)
        self.start_epoch = int(saved["epoch"])
        if saved.get("epoch_progress") is not None:
            self.partial = EpochProgress.from_state(saved["epoch_progress"])
            self.partial.sums = self.partial.sums.to(self.device)
        # a write that failed after the epoch's metrics but before its checkpoint left a row ahead
        self.outputs.write_metrics(self.history)

    # -- phases --------------------------------------------------------------------------------
    def before_epoch(self, epoch: int) -> dict:
        """The hooks' lower level (the mapping refit); their metric-row entries."""
        entries: dict = {"mapping_changes": None}
        for hook in self.hooks:
            entries.update(hook.before_epoch(self.context, epoch))
        return entries

    def train_epoch(self, epoch: int) -> dict:
        """Upper level: one pass over the training set with the step the family owns.

        An epoch stopped on request (:class:`EpochProgress` from ``--resume``) continues after its
        done steps with its sums, generators and hooks' statistics as they were."""
        self.model.train()
        self.train_loader.set_epoch(epoch)
        augment_gen = epoch_generator(self.config.seed, epoch, stream=1)
        partial, self.partial = (self.partial, None) if self.partial is not None and self.partial.epoch == epoch else (None, self.partial)
        # running sums on the device: loss, correct, samples
        sums = torch.zeros(3, device=self.device, dtype=torch.float64)
        if partial is None:
            for hook in self.hooks:
                hook.start_training(self.context, epoch)
        else:
            sums.copy_(partial.sums)
            augment_gen.set_state(partial.augment_state)
            torch.set_rng_state(partial.rng_state)
            for hook in self.hooks:
                hook.resume_training(self.context, epoch)
        first = 0 if partial is None else partial.steps_done
        self.guard.start_epoch()
        bar = self._bar(self.train_loader, f"epoch {epoch + 1} train")
        for step, (images, labels) in enumerate(bar):
            if step < first:  # done before the stop: the order depends only on (seed, epoch)
                continue
            x = to_float01(images)
            if self.experiment.train_augment is not None:  # drawn per sample (seed, epoch, index), before the batch is split
                x = self.experiment.train_augment(x, AugmentDraws(self.config.seed, epoch, self.train_loader.batch_indices(step), augment_gen))
            batch_loss = self.optimize(x, labels, sums)
            self.guard.observe(step, batch_loss)
            progress_point = step % self.config.log_interval == 0
            if progress_point:
                self._check_numbers(epoch)
                if self.show_bars:
                    bar.set_postfix(loss=f"{batch_loss.item():.3f}")
            # several ranks agree on a stop through a collective, so they ask at progress points only
            signal_name = self.stop_requested() if progress_point or not self.runtime.distributed else None
            if signal_name:
                self._check_numbers(epoch)
                done = EpochProgress(epoch, step + 1, sums, augment_gen.get_state(), torch.get_rng_state(), *self._epoch_entries)
                self.outputs.save(CHECKPOINT, self.state(epoch, done))
                where = f"in epoch {epoch + 1} of {self.config.epochs} after step {step + 1} of {len(self.train_loader)}"
                raise preemption.Stopped(signal_name, where, str(self.outputs.location(CHECKPOINT)))
        self._check_numbers(epoch, end_of_epoch=True)
        totals = self.runtime.all_reduce_sum(sums.clone())
        for hook in self.hooks:
            hook.end_training(self.context, epoch)
        count = max(1.0, float(totals[2]))
        return {"train_loss": float(totals[0]) / count, "train_acc": 100.0 * float(totals[1]) / count, "train_samples": int(count)}

    def _check_numbers(self, epoch: int, end_of_epoch: bool = False) -> None:
        cause = likely_cause(self.config.lr, len(self.optimizer.param_groups), self.runtime.precision)
        kept = checkpoint_kept(str(self.outputs.location(CHECKPOINT)), len(self.history))
        self.guard.check(epoch, self.runtime, self.trained_parameters, cause, kept, end_of_epoch)

    def optimize(self, x: torch.Tensor, labels: torch.Tensor, sums: torch.Tensor) -> torch.Tensor:
        """One optimizer step on a batch, in chunks; adds to the epoch's sums (loss, correct, samples), returns the batch loss."""
        self.optimizer.zero_grad(set_to_none=True)
        chunks = list(zip(x.split(self.chunk), labels.split(self.chunk)))
        batch_loss = torch.zeros((), device=self.device)
        for i, (xc, yc) in enumerate(chunks):
            # the batch loss is the mean over the batch: each chunk's mean counts n_chunk / n_batch
            weight = yc.shape[0] / labels.shape[0]
            with self._grad_sync(last_chunk=i == len(chunks) - 1):
                with self.runtime.autocast():
                    out = self.step.forward(self.train_model, xc, yc)
                self.scaler.scale(out.loss * weight if len(chunks) > 1 else out.loss).backward()
            with torch.no_grad():
                sums[0] += out.loss.detach() * yc.shape[0]
                sums[1] += (out.logits.argmax(dim=1) == yc).sum()
                sums[2] += yc.shape[0]
                batch_loss += out.loss.detach() * weight
                for hook in self.hooks:
                    hook.on_chunk(out, yc)
        if self.experiment.optimizer_hooks:
            self.scaler.unscale_(self.optimizer)
            for edit in self.experiment.optimizer_hooks:
                edit(self.optimizer)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return batch_loss

    def evaluate(self, loader: BatchLoader, desc: str = "test", source_counts: torch.Tensor | None = None) -> float:
        """Accuracy in %; ``source_counts [S, K]``, if given, accumulates source top-1 vs target label."""
        self.model.eval()
        return top1_accuracy(self.model, self._pass_bar(loader, desc), self.runtime, source_counts)

    def _new_stats(self) -> torch.Tensor:
        return torch.zeros(self.mapping.num_source, self.mapping.num_target, device=self.device)

    # -- the loop ------------------------------------------------------------------------------
    def fit(self) -> dict:
        # on resume, drop TensorBoard events of epochs that the checkpoint does not contain
        self.outputs.start_logging(self.start_epoch)
        for epoch in range(self.start_epoch, self.config.epochs):
            lr = self.optimizer.param_groups[0]["lr"]
            self.runtime.synchronize()
            t0 = time.perf_counter()
            if self.partial is not None and self.partial.epoch == epoch:  # its hooks ran before the stop
                entries, t0 = self.partial.entries, t0 - self.partial.hook_seconds
            else:
                entries = self.before_epoch(epoch)
            self.runtime.synchronize()
            t1 = time.perf_counter()
            self._epoch_entries = (entries, t1 - t0)
            train = self.train_epoch(epoch)
            self.runtime.synchronize()
            t2 = time.perf_counter()
            test_counts = self._new_stats()  # for the mapping heatmap (runner/snapshots.py)
            test_acc = self.evaluate(self.test_loader, f"epoch {epoch + 1} test", source_counts=test_counts)
            val_acc = self.evaluate(self.val_loader, f"epoch {epoch + 1} val") if self.val_loader is not None else None
            self.runtime.synchronize()
            t3 = time.perf_counter()
            row = {
                "epoch": epoch + 1, **train, "test_acc": test_acc, "val_acc": val_acc, "lr": lr, **entries,
                "mapping_seconds": t1 - t0, "train_seconds": t2 - t1, "eval_seconds": t3 - t2, "epoch_seconds": t3 - t0,
                "train_images_per_s": train["train_samples"] / max(1e-9, t2 - t1),
            }  # fmt: skip
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
        self.outputs.log_scalars(epoch + 1, epoch_scalars(row))
        if self.runtime.is_main:
            progress.line(epoch_line(row, self.config.epochs, self.best["test_acc"]))
        self._write_snapshots(epoch + 1, test_counts)
        self.outputs.save(CHECKPOINT, state)

    def _write_snapshots(self, epoch: int, test_counts: torch.Tensor) -> None:
        if self.outputs.enabled:  # only rank 0 writes
            counts = prediction_counts(epoch, test_counts, self.mapping, self.experiment.source_names, self.data.class_names)
            self.outputs.write_snapshots(self.model, epoch, self.config.epochs, counts)

    def summary(self) -> dict:
        return run_summary(self.config, self.history, self.best, self.num_trainable, self.data, self.experiment.info)
