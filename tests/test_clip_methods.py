"""CLIP methods: the mapping over virtual labels, zero-shot accuracy, end-to-end runs, linear probe."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import cfg
from algorithms.cli import main
from algorithms.clip_linear_probe import fit_logistic_regression, main as linear_probe_main, regularised_loss, select_c
from algorithms.clip_methods import zero_shot_accuracy
from algorithms.label_mapping import accumulate_statistic, build_mapping
from algorithms.runtime import Runtime
from clip_helpers import TINY_CLIP, tiny_clip_args
from data.registry import SubsetSpec, TargetData, load_dataset
from data.tensors import ImageTensorSet
from models.clip_model import CLIPClassifier, CLIPPreprocess, load_clip
from models.clip_templates import TEMPLATES, fill
from models.clip_text import clip_class_name, encode_texts

CPU = Runtime(torch.device("cpu"), "fp32")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(cfg, "CACHE_PATH", tmp_path / "cache")


def run_dir_of(results: Path, method: str) -> Path:
    (path,) = [p.parent for p in (results / method).rglob("config.json")]
    return path


def test_ilm_over_virtual_labels_hand_made():
    """T=2 templates x K=3 classes = 6 virtual labels, text s = unit vector e_s; features pick labels."""
    templates, classes = ["a {}.", "the {}."], ["cat", "dog", "fish"]
    classifier = CLIPClassifier(nn.Identity(), torch.tensor(0.0), torch.eye(6))
    # images of cat -> mostly "the dog." (s=4); dog -> "a dog." (s=1); fish -> also "the dog." but fewer votes
    features = torch.eye(6)[[4, 4, 4, 0, 1, 1, 1, 4, 4, 5]]
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    mapping = build_mapping("ilm", 6, 3)
    stats = torch.zeros(6, 3)
    accumulate_statistic(stats, mapping.source_statistic(classifier(features)), labels)
    assert stats[4].tolist() == [3, 0, 2] and stats[1].tolist() == [0, 3, 0]
    mapping.fit(stats)
    # greedy: (s=4, cat) 3 first, then (s=1, dog) 3, then fish takes its best remaining: s=5 "the fish."
    assert mapping.mapping.tolist() == [4, 1, 5]
    names = [fill(t, c) for t in templates for c in classes]
    assert mapping.describe(names, classes) == {"cat": "the dog.", "dog": "a dog.", "fish": "the fish."}
    assert torch.equal(mapping(classifier(features)), classifier(features)[:, [4, 1, 5]])


def test_zero_shot_accuracy_counts_correct_predictions():
    labels = torch.tensor([0, 1, 2, 2, 1, 0, 1, 2])
    images = (labels * 40).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 4, 4).clone()
    images[[1, 6]] = 0  # two class-1 images look like class 0
    data = TargetData("toy", ImageTensorSet(images, labels), ImageTensorSet(images, labels), ["a", "b", "c"], (4, 4), 3)

    def model(x):  # predicts round(pixel * 255 / 40)
        return torch.nn.functional.one_hot((x.mean(dim=(1, 2, 3)) * 255 / 40).round().long(), 3).float()

    model.to = lambda device: model
    model.eval = lambda: model
    assert zero_shot_accuracy(model, data, CPU, batch_size=3) == pytest.approx(100.0 * 6 / 8)


def test_ilm_tp_vp_end_to_end(tmp_path, cifar_root):
    results = tmp_path / "res"
    assert main("ilm_tp_vp", tiny_clip_args(results, cifar_root)) == 0
    run = run_dir_of(results, "ilm_tp_vp")
    assert run.relative_to(results).parts[:3] == ("ilm_tp_vp", "cifar10", TINY_CLIP)
    for name in ("config.json", "metrics.jsonl", "ckpt.pth", "best.pth", "results.json"):
        assert (run / name).is_file(), name
    out = json.loads((run / "results.json").read_text())
    config = json.loads((run / "config.json").read_text())
    assert out["num_source_labels"] == 81 * 10 and out["trainable_params"] == 3 * (2 * 4 * 32 + 2 * 24 * 4)
    assert config["config"]["lr"] == 40.0 and config["config"]["optimizer"] == "sgd" and config["config"]["scheduler"] == "cosine"
    # every epoch's mapping reads target -> template filled with a class name
    cifar = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    texts = {fill(t, c) for t in TEMPLATES for c in cifar}
    for epoch in (1, 2):
        mapping = json.loads((run / "mappings" / f"epoch_{epoch:03d}.json").read_text())
        assert list(mapping) == cifar and set(mapping.values()) <= texts and len(set(mapping.values())) == 10

    # zero-shot accuracy (logged in results and config) agrees with an independent computation
    assert out["zero_shot_test_acc"] == config["resolved"]["zero_shot_test_acc"]
    data = load_dataset("cifar10", cifar_root, subset=SubsetSpec())
    clip = load_clip(TINY_CLIP, "none")
    text = encode_texts(clip, [fill(TEMPLATES[0], clip_class_name(c)) for c in data.class_names], torch.device("cpu"))
    with torch.no_grad():
        features = clip.model.encode_image(CLIPPreprocess(32, clip.mean, clip.std)(data.test.images.float() / 255), normalize=True)
    expected = 100.0 * float(((features @ text.t()).argmax(1) == data.test.labels).float().mean())
    assert out["zero_shot_test_acc"] == pytest.approx(expected)

    # eval-only reads best.pth back
    assert main("ilm_tp_vp", tiny_clip_args(results, cifar_root, "--eval-only")) == 0
    assert json.loads((run / "eval.json").read_text())["test_acc"] == out["best_test_acc"]


@pytest.mark.parametrize("prompt", ["fixed_patch", "random_patch"])
def test_single_tp_vp_end_to_end(prompt, tmp_path, cifar_root):
    results = tmp_path / "res"
    args = tiny_clip_args(results, cifar_root, "--prompt", prompt, "--template-number", "5", "--epochs", "1", "--no-zero-shot")
    assert main("single_tp_vp", args) == 0
    out = json.loads((run_dir_of(results, "single_tp_vp") / "results.json").read_text())
    assert out["num_source_labels"] == 10 and out["trainable_params"] == 3 * 4 * 4
    assert "zero_shot_test_acc" not in out and out["text_prompts"] == "single"
    assert not (run_dir_of(results, "single_tp_vp") / "mappings").exists()  # identity: nothing to record


def test_clip_bad_input_is_one_line(tmp_path, cifar_root, capsys):
    assert main("single_tp_vp", tiny_clip_args(tmp_path, cifar_root, "--template-number", "81")) == 2
    assert "--template-number must be in 0..80" in capsys.readouterr().err
    assert main("ilm_tp_vp", tiny_clip_args(tmp_path, cifar_root, "--prompt", "pad")) == 2
    assert "for CLIP methods" in capsys.readouterr().err


def test_logistic_regression_reaches_the_optimum():
    torch.manual_seed(0)
    x = torch.randn(60, 5, dtype=torch.float64)
    y = (x[:, 0] + 0.5 * torch.randn(60, dtype=torch.float64) > 0).long() + (x[:, 1] > 1).long()
    weight, bias = fit_logistic_regression(x, y, 3, c=0.5, max_iter=500)
    w, b = weight.clone().requires_grad_(True), bias.clone().requires_grad_(True)
    regularised_loss(w, b, x, y, 0.5).backward()
    assert w.grad.abs().max() < 1e-6 and b.grad.abs().max() < 1e-6  # first-order optimality
    # stronger regularisation shrinks the weights
    small, _ = fit_logistic_regression(x, y, 3, c=1e-3, max_iter=500)
    assert small.norm() < 0.1 * weight.norm()


def test_c_is_chosen_on_validation_with_ties_to_the_smallest():
    torch.manual_seed(0)
    x = torch.randn(40, 2)
    y = (x[:, 0] > 0).long()
    best, scores = select_c((x, y), (x, y), 2, [100.0, 1.0, 0.01], max_iter=50)
    assert list(scores) == ["0.01", "1", "100"] and scores["100"] == 100.0
    assert best == min(float(c) for c, s in scores.items() if s == max(scores.values()))


def test_linear_probe_end_to_end(tmp_path, cifar_root):
    results = tmp_path / "res"
    args = ["--network", TINY_CLIP, "--clip-pretrained", "none", "--dataset", "cifar10", "--data-path", str(cifar_root),
            "--results-path", str(results), "--device", "cpu", "--c-values", "0.1", "10", "--max-iter", "30"]  # fmt: skip
    assert linear_probe_main(args) == 0
    run = run_dir_of(results, "clip_linear_probe")
    out = json.loads((run / "results.json").read_text())
    sizes = out["data_sizes"]
    assert sizes["train"] + sizes["val"] == 50 and 5 <= sizes["val"] <= 15 and sizes["test"] == 20
    assert out["best_c"] in (0.1, 10.0) and set(out["val_acc_by_c"]) == {"0.1", "10"}
    probe = torch.load(run / "probe.pth", weights_only=False)
    assert probe["weight"].shape == (10, 32) and out["trainable_params"] == 330
    assert linear_probe_main(args) == 2  # the run folder is not overwritten without --overwrite
