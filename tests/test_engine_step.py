"""algorithms/engine: a family owns its step (loss and output), its epoch hooks and its gradient edits."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_args

from algorithms.engine import EpochHook, StepOutput, Trainer, TrainingStep
from algorithms.methods import FAMILIES
from algorithms.runtime import Runtime
from data.registry import SubsetSpec, load_dataset
from runner.config import build_parser, config_from_args
from runner.run_dir import RunDir

CPU = torch.device("cpu")
SGD = ("--optimizer", "sgd", "--momentum", "0", "--lr", "10", "--scheduler", "constant", "--batch-size", "16")


def build(tmp_path, cifar_root, *extra: str, **experiment_changes) -> Trainer:
    config = config_from_args("ilm_vp", build_parser("ilm_vp").parse_args(tiny_args(tmp_path, cifar_root, *SGD, *extra)))
    data = load_dataset("cifar10", cifar_root, batch_size=config.batch_size, subset=SubsetSpec())
    runtime = Runtime(CPU, "fp32")
    torch.manual_seed(0)
    experiment = replace(FAMILIES["visual_prompt"].build(config, data, runtime), **experiment_changes)
    return Trainer(config, experiment, data, runtime, RunDir(tmp_path / "run", enabled=False))


def prompt_after_one_epoch(trainer: Trainer) -> torch.Tensor:
    trainer.before_epoch(0)
    trainer.train_epoch(0)
    return trainer.model.input_transform.theta.detach().clone()


class PlainCrossEntropy(TrainingStep):
    """The ILM-VP objective written out by hand, without the default class's code."""

    def forward(self, model, images, labels):
        target = model(images)
        return StepOutput(F.nll_loss(torch.log_softmax(target.float(), dim=1), labels), target)


class SquaredError(TrainingStep):
    """Another objective: squared error against one-hot targets."""

    def forward(self, model, images, labels):
        target = model(images)
        onehot = F.one_hot(labels, target.shape[1]).float()
        return StepOutput(((target.float().softmax(1) - onehot) ** 2).sum(1).mean(), target)


def test_the_default_step_is_cross_entropy_on_the_mapped_logits(tmp_path, cifar_root):
    default = prompt_after_one_epoch(build(tmp_path / "a", cifar_root))
    by_hand = prompt_after_one_epoch(build(tmp_path / "b", cifar_root, step=PlainCrossEntropy()))
    other = prompt_after_one_epoch(build(tmp_path / "c", cifar_root, step=SquaredError()))
    torch.testing.assert_close(default, by_hand, rtol=1e-5, atol=1e-6)
    assert default.abs().sum() > 0 and not torch.allclose(default, other, atol=1e-6)


@pytest.mark.slow
def test_a_family_step_runs_on_every_chunk_and_its_loss_is_reported(tmp_path, cifar_root):
    sizes = []

    class Recording(TrainingStep):
        def forward(self, model, images, labels):
            sizes.append(images.shape[0])
            return super().forward(model, images, labels)

    trainer = build(tmp_path, cifar_root, "--micro-batch", "8", step=Recording())
    trainer.before_epoch(0)
    metrics = trainer.train_epoch(0)
    assert sizes == [8, 8] * 3 + [2] and metrics["train_samples"] == 50  # 50 images, batches of 16, chunks of 8


class Counting(EpochHook):
    name = "counting"

    def __init__(self):
        self.epochs, self.chunks, self.restored = [], 0, None

    def before_epoch(self, ctx, epoch):
        self.epochs.append(epoch)
        return {"counted_chunks": self.chunks}

    def on_chunk(self, output, labels):
        self.chunks += labels.shape[0]

    def state_dict(self):
        return {"counting_chunks": self.chunks}

    def load_state_dict(self, checkpoint, device):
        self.restored = checkpoint["counting_chunks"]


def test_hooks_replace_the_mapping_refit_and_their_state_goes_into_the_checkpoint(tmp_path, cifar_root):
    hook = Counting()
    trainer = build(tmp_path, cifar_root, "--epochs", "2", hooks=[hook])
    mapping_before = trainer.model.label_mapping.mapping.clone()
    entries = trainer.before_epoch(0)
    assert entries == {"counted_chunks": 0}  # no refit (and no mapping entry): the family asked for none
    trainer.train_epoch(0)
    assert hook.chunks == 50 and torch.equal(trainer.model.label_mapping.mapping, mapping_before)
    state = trainer.state(1)
    assert state["counting_chunks"] == 50 and "pending_stats" not in state
    hook.load_state_dict(state, CPU)
    assert hook.restored == 50


def test_optimizer_hooks_see_the_whole_batch_gradient_unscaled(tmp_path, cifar_root):
    seen = {}

    def capture(name):
        def hook(optimizer):
            seen.setdefault(name, []).append(optimizer.param_groups[0]["params"][0].grad.clone())

        return hook

    whole = build(tmp_path / "whole", cifar_root, optimizer_hooks=[capture("whole")])
    chunked = build(tmp_path / "chunked", cifar_root, "--micro-batch", "5", optimizer_hooks=[capture("chunked")])
    for trainer in (whole, chunked):
        prompt_after_one_epoch(trainer)
    assert len(seen["whole"]) == len(seen["chunked"]) == 4
    for a, b in zip(seen["whole"], seen["chunked"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_an_optimizer_hook_that_edits_gradients_changes_the_update(tmp_path, cifar_root):
    def zero(optimizer):
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.zero_()

    trainer = build(tmp_path, cifar_root, optimizer_hooks=[zero])
    before = trainer.model.input_transform.theta.detach().clone()
    assert torch.equal(prompt_after_one_epoch(trainer), before)
