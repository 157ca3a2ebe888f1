"""The epochs: hooks (the mapping refit), training with the family's step, evaluation, checkpoints.

Each epoch: the family's hooks run (lower level: ILM's mapping refit), then one pass of
training with the step the family owns (upper level), then test (and validation) top-1, top-5
and loss. What the parts compute belongs to the :class:`~algorithms.engine.experiment.Experiment`;
when and where it runs (chunks, ranks, precision, scaling, checkpoints) belongs here. The trainer
knows nothing of the model's shape: it trains a :class:`~algorithms.engine.trainable.Trainable`
(its trainable parts and state; its outputs, which the step turns into a loss and evaluation
scores); whatever a model part records (the label mapping's files and heatmap) is its hook's
business. Writes go through :class:`~algorithms.outputs.RunOutputs` (the runner's run folder).

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
from algorithms.engine.evaluation import SUMS, evaluation_batch_size, split_metrics, training_metrics, training_sums
from algorithms.engine.experiment import Experiment
from algorithms.engine.guard import NumericalGuard, checkpoint_kept, likely_cause
from algorithms.engine.hooks import EpochContext
from algorithms.engine.interruption import EpochProgress, stoppable_pass
from algorithms.engine.loaders import build_loaders
from algorithms.engine.reporting import epoch_line, epoch_scalars, run_summary
from algorithms.engine.schedule import build_optimizations
from algorithms.outputs import BEST, CHECKPOINT, RunOutputs
from algorithms.runtime import Runtime, compile_options
from algorithms.settings import RunConfig
from common import preemption, progress
from common.errors import UserError
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
        self.step, self.hooks = experiment.step, list(experiment.hooks)
        compile_kwargs = compile_options(config.compile)  # --compile [max]
        if compile_kwargs is not None:  # the model's frozen body where it names one, else the whole model
            getattr(self.model, "compile_frozen", self.model.compile)(**compile_kwargs)
        self.show_bars = runtime.is_main
        loaders = build_loaders(config, self.model, self.step, data, runtime, self._note, experiment.info)
        self.train_loader, self.stats_loader, self.test_loader, self.val_loader = loaders.train, loaders.stats, loaders.test, loaders.val
        self.chunk = loaders.chunk
        if config.recompute:
            experiment.info["stages_recomputed"] = getattr(experiment.model, "rewrites", {}).get("stages_recomputed", 0)
        params = self.model.trainable_parameters()
        self.num_trainable = sum(p.numel() for p in params)
        # the run's optimizer first, then any part's own (a group with a "recipe": --mapping head)
        self.optimizations = build_optimizations(config, experiment.param_groups or [{"params": params}], len(self.train_loader))
        self.optimizer, self.scheduler = self.optimizations[0].optimizer, self.optimizations[0].scheduler
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=runtime.precision == "fp16")
        self.train_model = self.model
        if runtime.distributed and params:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # a frozen network's buffers are identical on every rank: re-broadcast rank 0's buffers each
            # step only when a trained module keeps some (batch-norm statistics of a mask network, say)
            self.train_model = DistributedDataParallel(self.model, device_ids=ids, broadcast_buffers=self.model.trains_buffers)
        self.context = EpochContext(self.model, runtime, config, self.stats_loader, self._pass_bar, outputs, experiment.source_names, data.class_names)
        self.history: list[dict] = []
        self.best = {"test_acc": None, "epoch": None}
        self.start_epoch = 0
        self.trained_parameters = params
        self.guard = NumericalGuard(self.device, scaled=self.scaler.is_enabled())
        self.partial: EpochProgress | None = None  # an epoch stopped on request, from --resume
        # the running epoch's hook entries, their seconds, and its learning rate at its start (its metric row's)
        self._epoch_entries: tuple[dict, float, float] = ({}, 0.0, config.lr)
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

    # -- state ---------------------------------------------------------------------------------
    def state(self, epoch: int, progress: EpochProgress | None = None) -> dict:
        """The checkpoint after ``epoch`` finished epochs, or inside the next one with ``progress``."""
        state = {
            "epoch": epoch,
            "model": self.model.trainable_state(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            **self._more_optimizers_state(),
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

    def _more_optimizers_state(self) -> dict:
        """The optimizers of parts that bring their own (absent where there are none, as before they existed)."""
        more = [{"optimizer": o.optimizer.state_dict(), "scheduler": o.scheduler.state_dict()} for o in self.optimizations[1:]]
        return {"more_optimizers": more} if more else {}

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
        more = saved.get("more_optimizers", [])
        if len(more) != len(self.optimizations) - 1:
            raise UserError(f"checkpoint {path} holds {len(more) + 1} optimizers, this run has {len(self.optimizations)}; start a new run instead")
        for state, optimization in zip(more, self.optimizations[1:]):
            ckpt.load_optimization_state(state, optimization.optimizer, optimization.scheduler, None, path)
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
        entries: dict = {}
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
        sums = training_sums(self.device)  # running sums on the device: loss, correct, samples, top-5 correct
        if partial is None:
            for hook in self.hooks:
                hook.start_training(self.context, epoch)
        else:
            sums.copy_(partial.sums if len(partial.sums) == SUMS else torch.cat([partial.sums.to(sums), sums.new_tensor([float("nan")])]))
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
        return training_metrics(totals)

    def _check_numbers(self, epoch: int, end_of_epoch: bool = False) -> None:
        cause = likely_cause(self.config.lr, sum(len(o.optimizer.param_groups) for o in self.optimizations), self.runtime.precision)
        kept = checkpoint_kept(str(self.outputs.location(CHECKPOINT)), len(self.history))
        self.guard.check(epoch, self.runtime, self.trained_parameters, cause, kept, end_of_epoch)

    def optimize(self, x: torch.Tensor, labels: torch.Tensor, sums: torch.Tensor) -> torch.Tensor:
        """One optimizer step on a batch, in chunks; adds to the epoch's sums (loss, correct, samples), returns the batch loss."""
        for o in self.optimizations:
            o.optimizer.zero_grad(set_to_none=True)
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
                sums += training_sums(self.device, out.loss.detach(), out.logits.detach(), yc)
                batch_loss += out.loss.detach() * weight
                for hook in self.hooks:
                    hook.on_chunk(out, yc)
        if self.experiment.optimizer_hooks:
            for o in self.optimizations:
                self.scaler.unscale_(o.optimizer)
                for edit in self.experiment.optimizer_hooks:
                    edit(o.optimizer)
        for o in self.optimizations:
            self.scaler.step(o.optimizer)
        self.scaler.update()
        for o in self.optimizations:
            o.scheduler.step()
        return batch_loss

    def evaluate(self, loader: BatchLoader, split: str = "test", desc: str | None = None) -> dict[str, float]:
        """``{"acc", "top5", "loss"}`` (%, %, mean cross-entropy) over ``split``; the hooks that ask see every batch's outputs."""
        self.model.eval()
        observers = [o for o in (h.evaluation_observer(self.context, split) for h in self.hooks) if o is not None]
        return split_metrics(self.model, self._pass_bar(loader, desc or split), self.runtime, observers)

    # -- the loop ------------------------------------------------------------------------------
    def fit(self) -> dict:
        # on resume, drop TensorBoard events of epochs that the checkpoint does not contain
        self.outputs.start_logging(self.start_epoch)
        for epoch in range(self.start_epoch, self.config.epochs):
            lr = self.optimizer.param_groups[0]["lr"]
            self.runtime.synchronize()
            t0 = time.perf_counter()
            if self.partial is not None and self.partial.epoch == epoch:  # its hooks and first steps ran before the stop
                entries, t0 = self.partial.entries, t0 - self.partial.hook_seconds
                lr = lr if self.partial.lr is None else self.partial.lr  # the schedule has moved on since the epoch began
            else:
                entries = self.before_epoch(epoch)
            self.runtime.synchronize()
            t1 = time.perf_counter()
            self._epoch_entries = (entries, t1 - t0, lr)
            train = self.train_epoch(epoch)
            self.runtime.synchronize()
            t2 = time.perf_counter()
            test = self.evaluate(self.test_loader, "test", f"epoch {epoch + 1} test")
            val = self.evaluate(self.val_loader, "val", f"epoch {epoch + 1} val") if self.val_loader is not None else {}
            self.runtime.synchronize()
            t3 = time.perf_counter()
            row = {
                "epoch": epoch + 1, **train, "test_acc": test["acc"], "val_acc": val.get("acc"), "lr": lr, **entries,
                "test_top5": test["top5"], "test_loss": test["loss"], "val_top5": val.get("top5"), "val_loss": val.get("loss"),
                "mapping_seconds": t1 - t0, "train_seconds": t2 - t1, "eval_seconds": t3 - t2, "epoch_seconds": t3 - t0,
                "train_images_per_s": train["train_samples"] / max(1e-9, t2 - t1),
            }  # fmt: skip
            self.history.append(row)
            improved = self.best["test_acc"] is None or test["acc"] > self.best["test_acc"]
            if improved:
                self.best = {"test_acc": test["acc"], "epoch": epoch + 1}
            self._write_epoch(epoch, row, improved)
        results = self.summary()
        self.outputs.write_json("results.json", results)
        self.outputs.close()
        return results

    def _write_epoch(self, epoch: int, row: dict, improved: bool) -> None:
        """Every file of the epoch, the checkpoint last: a write that fails (disk full) leaves the
        previous checkpoint, from which ``--resume`` redoes this epoch and rewrites them all."""
        state = self.state(epoch + 1)
        if improved:
            best = {"epoch": epoch + 1, "model": state["model"], "test_acc": row["test_acc"], "config": state["config"], "data": state["data"]}
            self.outputs.save(BEST, best)
        self.outputs.write_metrics(self.history)
        # every rank: a hook may reduce what it collected across ranks before its rank 0 writes
        drawn = [c for c in (h.after_epoch(self.context, epoch + 1) for h in self.hooks) if c is not None]
        self.outputs.log_scalars(epoch + 1, epoch_scalars(row))
        if self.runtime.is_main:
            progress.line(epoch_line(row, self.config.epochs, self.best["test_acc"]))
        # the prompt's picture, and the first hook's prediction counts (the mapping heatmap)
        self.outputs.write_snapshots(self.model, epoch + 1, self.config.epochs, drawn[0] if drawn else None)
        self.outputs.save(CHECKPOINT, state)

    def summary(self) -> dict:
        return run_summary(self.config, self.history, self.best, self.num_trainable, self.data, self.experiment.info)
