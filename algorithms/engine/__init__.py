"""The training engine shared by every method, as small modules with one job each.

``trainable`` (what the trainer trains), ``experiment`` (what a family hands over), ``step`` (a chunk's loss: the family's), ``hooks``
(per-epoch refits: the mapping's), ``schedule`` (optimizer and learning rates), ``chunking``
(``--micro-batch``), ``loaders`` (a run's batches), ``evaluation`` (no-grad passes and reported
accuracies), ``checkpoint`` (what is saved and checked), ``guard`` (non-finite losses),
``interruption`` (a stop inside an epoch), ``reporting`` (epoch line, summary) and ``loop`` (the epochs).
"""
from algorithms.engine.checkpoint import check_same_data, data_identity
from algorithms.engine.evaluation import PROTOCOL, evaluation_batch_size, precompute_inputs, split_metrics, stacked_outputs, top1_accuracy, val_selection
from algorithms.engine.experiment import Augment, Experiment, OptimizerHook, Precompute, Precomputed
from algorithms.engine.guard import NonFiniteLoss
from algorithms.engine.hooks import EpochContext, EpochHook, MappingRefit
from algorithms.engine.interruption import EpochProgress
from algorithms.engine.loop import Trainer
from algorithms.engine.schedule import Optimization, build_optimizations, build_optimizer, lr_factor, schedule_warnings
from algorithms.engine.step import StepOutput, TrainingStep
from algorithms.engine.trainable import Trainable

__all__ = [
    "PROTOCOL", "Augment", "EpochContext", "EpochHook", "EpochProgress", "Experiment", "MappingRefit", "NonFiniteLoss", "Optimization", "OptimizerHook",
    "Precompute", "Precomputed", "StepOutput", "Trainable", "Trainer", "TrainingStep", "build_optimizations", "build_optimizer", "check_same_data", "data_identity", "evaluation_batch_size",
    "lr_factor", "precompute_inputs", "schedule_warnings", "split_metrics", "stacked_outputs", "top1_accuracy", "val_selection",
]  # fmt: skip
