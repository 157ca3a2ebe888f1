"""algorithms/methods/clip_prompting.py: the mapping over virtual labels, zero-shot accuracy, end-to-end runs."""
from __future__ import annotations

import json

import pytest
import torch
from clip_helpers import TINY_CLIP, private_cache, run_dir_of, tiny_clip_args  # noqa: F401  (private_cache: a fixture)
from torch import nn

from algorithms.mappings import accumulate_statistic, build_mapping
from algorithms.methods.clip_prompting import zero_shot_accuracy
from algorithms.runtime import Runtime
from data.registry import SubsetSpec, TargetData, load_dataset
from data.tensors import ImageTensorSet
from models.clip.model import CLIPClassifier, CLIPPreprocess, load_clip
from models.clip.templates import TEMPLATES, fill
from models.clip.text import clip_class_name, encode_texts
from runner.cli import main

CPU = Runtime(torch.device("cpu"), "fp32")


pytestmark = pytest.mark.usefixtures("private_cache")  # every test caches in its own folder



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


def test_text_prompts_use_the_reference_class_names_unless_asked_for_readable_ones():
    from algorithms.methods.clip_prompting import text_class_names
    from algorithms.settings import RunConfig

    images = ImageTensorSet(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]))
    data = TargetData("gtsrb", images, images, ["speed limit 20", "speed limit 30"], (4, 4), 2, text_names=["20_speed", "30_speed"])
    reference = text_class_names(RunConfig(method="ilm_tp_vp"), data)
    readable = text_class_names(RunConfig(method="ilm_tp_vp", extra={"class_names": "readable"}), data)
    assert [clip_class_name(n) for n in reference] == ["20 speed", "30 speed"]
    assert readable == ["speed limit 20", "speed limit 30"]
    plain = TargetData("cifar10", images, images, ["cat", "dog"], (4, 4), 2)  # no separate text names
    assert text_class_names(RunConfig(method="ilm_tp_vp"), plain) == ["cat", "dog"]


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


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize("prompt", ["fixed_patch", "random_patch"])
def test_single_tp_vp_end_to_end(prompt, tmp_path, cifar_root):
    results = tmp_path / "res"
    args = tiny_clip_args(results, cifar_root, "--prompt", prompt, "--template-number", "5", "--epochs", "1", "--no-zero-shot")
    assert main("single_tp_vp", args) == 0
    out = json.loads((run_dir_of(results, "single_tp_vp") / "results.json").read_text())
    assert out["num_source_labels"] == 10 and out["trainable_params"] == 3 * 4 * 4
    assert "zero_shot_test_acc" not in out and out["text_prompts"] == "single"
    assert not (run_dir_of(results, "single_tp_vp") / "mappings").exists()  # identity: nothing to record


@pytest.mark.slow
def test_single_tp_vp_with_attrvrs_resize_padding(tmp_path, cifar_root):
    """--prompt resize_padding decodes at CLIP's side less the frame (24 here) and zero-shot still sees CLIP's 32."""
    results = tmp_path / "res"
    assert main("single_tp_vp", tiny_clip_args(results, cifar_root, "--prompt", "resize_padding", "--epochs", "1")) == 0
    out = json.loads((run_dir_of(results, "single_tp_vp") / "results.json").read_text())
    assert out["trainable_params"] == 3 * (2 * 4 * 32 + 2 * 24 * 4) and "zero_shot_test_acc" in out


@pytest.mark.slow
def test_clip_runs_read_stored_images_as_clips_preprocessing(tmp_path):
    """A folder of non-square images: the CLIP run decodes each file with --decode crop at CLIP's
    input size (the tiny model's 32), and its zero-shot pass sees exactly those pixels."""
    import numpy as np
    from PIL import Image

    from data.image_io import read_image

    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("test", 3)):
        for name in ("Rose_Red", "black-eyed susan"):
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, size=(30 + 7 * i, 45, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    args = tiny_clip_args(tmp_path / "res", tmp_path / "data", "--epochs", "1") + ["--dataset", "folder"]
    assert main("single_tp_vp", args) == 0
    run = run_dir_of(tmp_path / "res", "single_tp_vp")
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["decode"] == "crop" and config["resolved"]["image_size"] == [32, 32]
    test_files = sorted((tmp_path / "data" / "test").rglob("*.png"))
    images = torch.stack([torch.from_numpy(read_image(f, (32, 32), "crop").transpose(2, 0, 1).copy()) for f in test_files])
    clip = load_clip(TINY_CLIP, "none")
    names = ["rose red", "black eyed susan"]  # readable folder names, then the text prompts' normalisation
    text = encode_texts(clip, [fill(TEMPLATES[0], n) for n in names], torch.device("cpu"))
    with torch.no_grad():
        features = clip.model.encode_image(CLIPPreprocess(32, clip.mean, clip.std)(images.float() / 255), normalize=True)
    assert [f.parent.name for f in test_files] == ["Rose_Red"] * 3 + ["black-eyed susan"] * 3  # the class order
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    expected = 100.0 * float(((features @ text.t()).argmax(1) == labels).float().mean())
    assert json.loads((run / "results.json").read_text())["zero_shot_test_acc"] == pytest.approx(expected)
@pytest.mark.slow
def test_single_tp_vp_with_the_low_rank_prompt(tmp_path, cifar_root, capsys):
    results = tmp_path / "res"
    args = tiny_clip_args(results, cifar_root, "--prompt", "lowrank", "--rank", "2", "--epochs", "1", "--no-zero-shot", prompt_size=None)
    assert main("single_tp_vp", args) == 0
    out = json.loads((run_dir_of(results, "single_tp_vp") / "results.json").read_text())
    assert out["trainable_params"] == 3 * 2 * 32 * 2  # B [3, 32, 2] and A [3, 2, 32] at the tiny CLIP's 32 px
    assert main("single_tp_vp", tiny_clip_args(tmp_path / "bad", cifar_root, "--rank", "2")) == 2
    assert "--rank applies to --prompt lowrank, not --prompt padding" in capsys.readouterr().err


def test_clip_bad_input_is_one_line(tmp_path, cifar_root, capsys):
    assert main("single_tp_vp", tiny_clip_args(tmp_path, cifar_root, "--template-number", "81")) == 2
    assert "argument --template-number: must be an integer in 0..80, got 81" in capsys.readouterr().err
    assert main("ilm_tp_vp", tiny_clip_args(tmp_path, cifar_root, "--prompt", "expansive")) == 2  # a CNN prompt
    assert "unknown prompt 'expansive'; choose from acavp, fixed_patch, lowrank, padding, random_patch, resize_padding, smm, watermark" in capsys.readouterr().err


def test_a_linear_mapping_gets_its_own_learning_rate_and_only_its_runs_change_identity():
    from torch import nn

    from algorithms.methods.clip_prompting import CLIP_MAPPING_LR, CLIPPromptingOptions
    from algorithms.methods.prompting import prompt_parameter_groups
    from models.clip.prompts import build_clip_prompt
    from runner.config import build_parser, config_from_args

    def config(*flags):
        return config_from_args("ilm_tp_vp", build_parser("ilm_tp_vp").parse_args(["--data-path", "/datasets", *flags]))

    assert "mapping_lr" not in config().option_values and "mapping_lr" not in config("--mapping", "blm").option_values  # folders unchanged
    linear = config("--mapping", "linear")
    assert linear.option_values["mapping_lr"] == CLIP_MAPPING_LR == 0.01 and linear.lr == 40.0
    assert config("--mapping", "linear", "--mapping-lr", "0.5").option_values["mapping_lr"] == 0.5
    assert config("--mapping", "linear").config_hash() != config("--mapping", "linear", "--mapping-lr", "0.5").config_hash()
    prompt, mapping = build_clip_prompt("lowrank", 8), nn.Linear(3, 2)
    mapping_lr = linear.options(CLIPPromptingOptions).mapping_lr
    groups, _ = prompt_parameter_groups(prompt, mapping, linear.lr, mapping_lr)
    assert [len(g["params"]) for g in groups] == [2, 2] and "lr" not in groups[0] and groups[1]["lr"] == 0.01
    assert prompt_parameter_groups(prompt, nn.Identity(), linear.lr, mapping_lr)[0] is None  # a mapping without parameters: one group at --lr
