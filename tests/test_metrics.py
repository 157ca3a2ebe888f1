"""Top-1, top-5 and loss of every split, against a hand computation on a small fixed batch."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from algorithms.engine.evaluation import correct_in_top, split_metrics, training_metrics, training_sums, val_selection
from algorithms.engine.reporting import final_metrics
from algorithms.runtime import Runtime

CPU = torch.device("cpu")

# 4 samples, 6 classes; rows ranked by hand below
LOGITS = torch.tensor([
    [5.0, 4.0, 3.0, 2.0, 1.0, 0.0],  # label 0: top-1 right
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],  # label 1: rank 5 of 6 -> in the top 5, not top 1
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],  # label 0: rank 6 -> not in the top 5
    [1.0, 1.0, 9.0, 1.0, 1.0, 1.0],  # label 2: top-1 right
])  # fmt: skip
LABELS = torch.tensor([0, 1, 0, 2])


def hand_cross_entropy(row: list[float], label: int) -> float:
    return -row[label] + math.log(sum(math.exp(v) for v in row))


class Fixed(nn.Module):
    """Returns the fixed logits of the samples it is given (their index is the first pixel)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor, return_source: bool = False):
        rows = self.logits[(x[:, 0, 0, 0] * 255).round().long()]
        return (rows, rows * 2) if return_source else rows


def batches(n: int, size: int):
    """uint8 images whose first pixel is the sample's index, with LABELS, in batches of ``size``."""
    images = torch.zeros(n, 3, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    return [(images[i : i + size], LABELS[:n][i : i + size]) for i in range(0, n, size)]


@pytest.mark.parametrize("batch", [1, 3, 4])
def test_split_metrics_equal_a_hand_computation_at_any_batch_size(batch):
    metrics = split_metrics(Fixed(LOGITS), batches(4, batch), Runtime(CPU, "fp32"))
    assert metrics["acc"] == pytest.approx(100.0 * 2 / 4)  # samples 0 and 3
    assert metrics["top5"] == pytest.approx(100.0 * 3 / 4)  # samples 0, 1, 3 (sample 2's label is last of 6)
    loss = sum(hand_cross_entropy(LOGITS[i].tolist(), int(LABELS[i])) for i in range(4)) / 4
    assert metrics["loss"] == pytest.approx(loss, rel=1e-6)


def test_top5_with_five_classes_or_fewer_is_every_sample():
    """With K <= 5 the top min(5, K) logits hold every class: top-5 is 100 %, top-1 is not."""
    logits = LOGITS[:, :3]
    labels = torch.tensor([0, 1, 2, 0])
    assert int(correct_in_top(logits, labels)) == 4
    assert int((logits.argmax(1) == labels).sum()) == 2  # samples 0 and 2
    # and the 6-class case by hand: the label among the five highest
    assert int(correct_in_top(LOGITS, LABELS)) == 3


def test_observers_see_every_batch_with_the_models_other_output():
    seen = []
    split_metrics(Fixed(LOGITS), batches(4, 3), Runtime(CPU, "fp32"), [lambda logits, source, labels: seen.append((logits, source, labels))])
    assert [len(labels) for _, _, labels in seen] == [3, 1]
    assert torch.equal(torch.cat([s for _, s, _ in seen]), LOGITS * 2)


def test_training_sums_give_the_training_rows_metrics():
    loss = torch.tensor(1.5)
    sums = training_sums(CPU, loss, LOGITS[:3], LABELS[:3]) + training_sums(CPU, torch.tensor(0.5), LOGITS[3:], LABELS[3:])
    row = training_metrics(sums)
    assert row == {"train_loss": pytest.approx((1.5 * 3 + 0.5) / 4), "train_acc": 50.0, "train_top5": 75.0, "train_samples": 4}
    # an epoch resumed from a checkpoint written before top-5 existed does not know it
    assert training_metrics(torch.tensor([4.0, 2.0, 4.0, float("nan")], dtype=torch.float64))["train_top5"] is None


def test_results_report_top5_and_loss_of_every_split():
    history = [
        {"epoch": 1, "train_loss": 2.0, "train_acc": 10.0, "train_top5": 50.0, "test_acc": 20.0, "test_top5": 60.0, "test_loss": 1.9,
         "val_acc": 30.0, "val_top5": 70.0, "val_loss": 1.8},
        {"epoch": 2, "train_loss": 1.0, "train_acc": 40.0, "train_top5": 80.0, "test_acc": 25.0, "test_top5": 65.0, "test_loss": 1.7,
         "val_acc": 30.0, "val_top5": 75.0, "val_loss": 1.6},
    ]  # fmt: skip
    assert val_selection(history) == {"val_selected_test_acc": 20.0, "val_selected_epoch": 1, "best_val_acc": 30.0,
                                      "val_selected_test_top5": 60.0, "val_selected_test_loss": 1.9}  # fmt: skip
    final = final_metrics(history[-1])
    assert final == {"final_train_acc": 40.0, "final_train_top5": 80.0, "final_train_loss": 1.0, "final_test_acc": 25.0,
                     "final_test_top5": 65.0, "final_test_loss": 1.7, "final_val_acc": 30.0, "final_val_top5": 75.0, "final_val_loss": 1.6}  # fmt: skip
    no_val = {k: v for k, v in history[-1].items() if not k.startswith("val_")}
    assert not any(k.startswith("final_val") for k in final_metrics(no_val))
