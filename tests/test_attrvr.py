"""AttrVR (algorithms/methods/attrvr.py, models/clip/attributes.py, models/clip/attribute_scorer.py):
top-k attribute scoring by hand, reading and sampling the attribute files, errors, end-to-end runs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from clip_helpers import TINY_CLIP, private_cache, register_tiny_clip, run_dir_of  # noqa: F401  (private_cache: a fixture)
from conftest import SHARED, same_training, straight_and_resumed, write_image_folder
from torch import nn

from common.errors import UserError
from common.seeding import init_generator
from models.clip.attribute_scorer import AttributeScorer, top_k_attribute_scores
from models.clip.attributes import attribute_file, read_attributes, sample_attributes, usable_sentences
from runner.cli import main

pytestmark = pytest.mark.usefixtures("private_cache")  # every test caches in its own folder

CLASSES = ["banded_stripes", "dotted", "plain"]


# ---------------------------------------------------------------------------------------------
# Scoring


def hand_made_scorer(weight: float = 0.5) -> AttributeScorer:
    """K=2 classes, m=3 attributes in 2-D, k=2 (the similarities are worked out in the tests)."""
    descriptive = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]],  # class 0: cos with e1 = 1, 0, 0.6; with e2 = 0, 1, 0.8
                                [[-1.0, 0.0], [0.8, 0.6], [0.0, -1.0]]])  # class 1: e1: -1, 0.8, 0; e2: 0, 0.6, -1  # fmt: skip
    distinctive = torch.tensor([[[0.0, 1.0], [0.0, 2.0], [0.0, 1.0]],  # class 0: e1: 0, 0, 0; e2: 1, 1, 1
                                [[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]]])  # class 1: e1: 1, 1, -1; e2: 0, 0, 0  # fmt: skip
    return AttributeScorer(nn.Identity(), descriptive, distinctive, k=2, weight=weight)


def test_top_k_scores_against_a_hand_computation():
    scorer = hand_made_scorer()
    images = torch.tensor([[2.0, 0.0], [0.0, 0.5]])  # e1 and e2 before normalisation
    # image e1: descriptive top-2 means 100 * (1 + 0.6) / 2 = 80 and 100 * (0.8 + 0) / 2 = 40;
    #           distinctive 0 and 100 * (1 + 1) / 2 = 100; logits 0.5 * 80 + 0.5 * 0 = 40, 0.5 * 40 + 0.5 * 100 = 70
    # image e2: descriptive (1 + 0.8) / 2 -> 90 and (0.6 + 0) / 2 -> 30; distinctive 100 and 0; logits 95, 15
    assert torch.allclose(scorer(images), torch.tensor([[40.0, 70.0], [95.0, 15.0]]), atol=1e-4)
    skewed = hand_made_scorer(weight=0.25)  # 0.25 * 80 + 0.75 * 0 = 20, 0.25 * 40 + 0.75 * 100 = 85
    assert torch.allclose(skewed(images)[0], torch.tensor([20.0, 85.0]), atol=1e-4)


def test_top_k_of_m_is_the_mean_of_all_and_top_1_the_max():
    features = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    attributes = torch.nn.functional.normalize(torch.randn(4, 6, 8), dim=-1)
    similarity = 100 * torch.einsum("bd,kmd->bkm", features, attributes)
    assert torch.allclose(top_k_attribute_scores(features, attributes, 6), similarity.mean(-1), atol=1e-4)
    assert torch.allclose(top_k_attribute_scores(features, attributes, 1), similarity.amax(-1), atol=1e-4)


def test_the_scorer_passes_gradients_to_its_input_and_keeps_no_state():
    scorer = hand_made_scorer()
    images = torch.tensor([[2.0, 1.0]], requires_grad=True)
    scorer(images).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert scorer.state_dict() == {}  # the embeddings are fixed by the files and the seed, not checkpointed
    with pytest.raises(ValueError, match="k=4"):
        AttributeScorer(nn.Identity(), torch.randn(2, 3, 4), torch.randn(2, 3, 4), k=4)


# ---------------------------------------------------------------------------------------------
# Reading and sampling


def write_attributes(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


def test_sentences_of_fewer_than_20_characters_are_dropped():
    sentences = [".", "short one", "x" * 20, "  " + "y" * 19 + "\n", "\n" + "z" * 25]
    assert usable_sentences(sentences) == ["x" * 20, "z" * 25]  # 20 kept; 19 after stripping dropped


def test_sampling_without_replacement_when_enough_remain_and_with_it_otherwise():
    many = [f"sentence number {i:02d} is long enough" for i in range(25)] + ["tiny"]
    few = ["the first usable sentence", "the second usable sentence", "no"]
    drawn = sample_attributes([many, few], ["a", "b"], 20, init_generator(7, "attrvr/descriptive"))
    assert len(drawn[0]) == 20 and len(set(drawn[0])) == 20 and set(drawn[0]) <= set(many[:25])
    assert len(drawn[1]) == 20 and set(drawn[1]) == set(few[:2])  # 20 draws from 2: both appear (p of not: 2 * 2^-20)
    again = sample_attributes([many, few], ["a", "b"], 20, init_generator(7, "attrvr/descriptive"))
    other = sample_attributes([many, few], ["a", "b"], 20, init_generator(8, "attrvr/descriptive"))
    assert again == drawn and other[0] != drawn[0]


def test_a_class_with_no_usable_sentence_is_named():
    with pytest.raises(UserError, match=r"no distinctive attribute of at least 20 characters in f.json for: 'b'"):
        sample_attributes([["a long enough sentence here"], [".", "tiny"]], ["a", "b"], 3, torch.Generator(), "distinctive", "f.json")


def test_file_keys_match_class_names_with_underscores_as_spaces(tmp_path):
    path = write_attributes(tmp_path / "x_des.json", {"American_Bulldog": ["s1"], "banded": ["s2"], "unused": ["s3"]})
    assert read_attributes(path, ["american bulldog", "banded"], "descriptive") == [["s1"], ["s2"]]


def test_missing_classes_an_empty_file_and_a_missing_file_are_errors(tmp_path):
    path = write_attributes(tmp_path / "x_des.json", {"banded": ["s"]})
    with pytest.raises(UserError, match=r"descriptive attribute file .*x_des.json has no entry for 2 of 3 classes: 'dotted', 'plain'"):
        read_attributes(path, ["banded", "dotted", "plain"], "descriptive")
    empty = write_attributes(tmp_path / "e_des.json", {})
    with pytest.raises(UserError, match=r"e_des.json is empty"):
        read_attributes(empty, ["banded"], "descriptive")
    with pytest.raises(UserError, match=r"distinctive attribute file not found: .*nowhere.json"):
        read_attributes(tmp_path / "nowhere.json", ["banded"], "distinctive")
    wrong = write_attributes(tmp_path / "w.json", {"banded": "one sentence, not a list"})
    with pytest.raises(UserError, match="must be one JSON object"):
        read_attributes(wrong, ["banded"])


def test_attribute_files_are_found_by_the_released_stems(tmp_path):
    assert attribute_file("descriptive", "oxfordpets", tmp_path, None) == tmp_path / "oxford_pets_des.json"
    assert attribute_file("distinctive", "flowers102", tmp_path, None) == tmp_path / "oxford_flowers_dist.json"
    assert attribute_file("distinctive", "dtd", tmp_path, None) == tmp_path / "dtd_dist.json"
    assert attribute_file("distinctive", "dtd", tmp_path, tmp_path / "mine.json") == tmp_path / "mine.json"
    with pytest.raises(UserError, match="pass --attributes DIR"):
        attribute_file("descriptive", "dtd", None, None)


# ---------------------------------------------------------------------------------------------
# End to end on a tiny random CLIP


def tiny_task(tmp_path: Path) -> tuple[Path, Path]:
    """An image folder of 3 classes (4 train, 2 test each) and its attribute folder."""
    data = write_image_folder(tmp_path / "data", CLASSES, {"train": 4, "test": 2}, size=40)
    attributes = tmp_path / "attributes"
    for kind in ("des", "dist"):
        content = {name: [f"a {kind} sentence about {name}, number {i}" for i in range(4)] + ["."] for name in CLASSES}
        write_attributes(attributes / f"folder_{kind}.json", content)
    return data, attributes


def attrvr_args(results: Path, data: Path, *extra: str) -> list[str]:
    return [
        "--network", register_tiny_clip(), "--clip-pretrained", "none", "--dataset", "folder", "--data-path", str(data),
        "--results-path", str(results), "--epochs", "1", "--batch-size", "4", "--shots", "2", "--device", "cpu",
        "--prompt-size", "4", "--attributes-per-class", "6", *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_attrvr_end_to_end(tmp_path):
    data, attributes = tiny_task(tmp_path)
    results = tmp_path / "res"
    assert main("attrvr", attrvr_args(results, data, "--attributes", str(attributes))) == 0
    run = run_dir_of(results, "attrvr")
    out = json.loads((run / "results.json").read_text())
    config = json.loads((run / "config.json").read_text())["config"]
    assert out["data_sizes"]["train"] == 6 and out["attributes_per_class"] == 6 and out["top_k"] == 3
    # AttrVR's frame: the 32-px tiny CLIP input holds the image at 24 inside a frame of 4
    assert out["trainable_params"] == 3 * (2 * 4 * 32 + 2 * 24 * 4)
    assert (config["lr"], config["optimizer"], config["scheduler"], config["prompt"], config["mapping"]) == (40.0, "sgd", "cosine", "resize_padding", "identity")
    assert out["descriptive_attributes_file"] == str(attributes / "folder_des.json")
    # --eval-only draws and encodes the same attributes again and reproduces the best epoch
    assert main("attrvr", attrvr_args(results, data, "--attributes", str(attributes), "--eval-only")) == 0
    assert json.loads((run / "eval.json").read_text())["test_acc"] == out["best_test_acc"]


@pytest.mark.slow
def test_the_script_refuses_a_missing_attribute_file_with_one_line(tmp_path):
    """Checked before any data or weights load: the default ViT-B/32 is only a name here."""
    script = Path(__file__).resolve().parents[1] / "experiments" / "clip" / "attrvr.py"
    argv = [sys.executable, str(script), "--dataset", "dtd", "--attributes", str(tmp_path), "--results-path", str(tmp_path / "res")]
    out = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [f"error: descriptive attribute file not found: {tmp_path / 'dtd_des.json'}"]


def test_the_prompt_changes_the_attrvr_logits_as_computed_by_hand(tmp_path):
    """The composed model equals frame(resize(image)) -> CLIP image encoder -> the top-k score."""
    from algorithms.methods.attrvr import build_attrvr
    from algorithms.runtime import Runtime
    from algorithms.settings import RunConfig
    from data.registry import SubsetSpec, load_dataset
    from models.clip.model import CLIPPreprocess, load_clip

    data_root, attributes = tiny_task(tmp_path)
    data = load_dataset("folder", data_root, image_size=24, subset=SubsetSpec())
    config = RunConfig(method="attrvr", network=register_tiny_clip(), dataset="folder", prompt="resize_padding", mapping="identity", seed=3,
                       extra={"clip_pretrained": "none", "attributes": str(attributes), "prompt_size": 4, "attributes_per_class": 5, "top_k": 2})  # fmt: skip
    experiment = build_attrvr(config, data, Runtime(torch.device("cpu"), "fp32"))
    model = experiment.model.eval()
    prompt = model.input_transform.prompt
    with torch.no_grad():
        prompt.pad_up.normal_()
        images = data.test.images.float() / 255
        clip = load_clip(register_tiny_clip(), "none")
        framed = nn.functional.pad(CLIPPreprocess(24, clip.mean, clip.std)(images), (4, 4, 4, 4)) + prompt.pattern()
        features = nn.functional.normalize(model.network.visual(framed), dim=-1)
        scorer = model.network
        expected = 0.5 * top_k_attribute_scores(features, scorer.descriptive, 2) + 0.5 * top_k_attribute_scores(features, scorer.distinctive, 2)
        assert torch.allclose(model(images), expected, atol=1e-4)
        assert scorer.descriptive.shape[:2] == (3, 5)


@pytest.mark.slow
def test_attrvr_resume_is_exact(tmp_path, monkeypatch):
    data, attributes = tiny_task(tmp_path)
    args = lambda results: attrvr_args(results, data, "--attributes", str(attributes), "--epochs", "2")  # noqa: E731
    straight, resumed = straight_and_resumed("attrvr", args, tmp_path, monkeypatch)
    assert same_training(straight, resumed) and len(resumed["history"]) == 2


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_attrvr_bad_attributes_are_one_error_line(tmp_path, capsys):
    data, attributes = tiny_task(tmp_path)
    results = tmp_path / "res"
    assert main("attrvr", attrvr_args(results, data)) == 2
    assert "pass --attributes DIR" in _one_error(capsys)
    assert main("attrvr", attrvr_args(results, data, "--attributes", str(tmp_path / "nowhere"))) == 2
    assert f"attribute file not found: {tmp_path / 'nowhere' / 'folder_des.json'}" in _one_error(capsys)
    write_attributes(attributes / "folder_dist.json", {"banded stripes": ["a long enough distinctive sentence"]})
    assert main("attrvr", attrvr_args(results, data, "--attributes", str(attributes))) == 2
    assert "has no entry for 2 of 3 classes: 'dotted', 'plain'" in _one_error(capsys)
    write_attributes(attributes / "folder_dist.json", {})
    assert main("attrvr", attrvr_args(results, data, "--attributes", str(attributes))) == 2
    assert "folder_dist.json is empty" in _one_error(capsys)
    assert main("attrvr", attrvr_args(results, data, "--attributes", str(attributes), "--top-k", "7")) == 2
    assert "--top-k 7 must be at most --attributes-per-class 6" in _one_error(capsys)
    assert not results.exists() or not any(results.rglob("config.json"))


# ---------------------------------------------------------------------------------------------
# The released attribute files (../shared/attributes), read where VP_SHARED is set

DTD_CLASSES = (
    "banded blotchy braided bubbly bumpy chequered cobwebbed cracked crosshatched crystalline dotted fibrous flecked "
    "freckled frilly gauzy grid grooved honeycombed interlaced knitted lacelike lined marbled matted meshed paisley "
    "perforated pitted pleated polka-dotted porous potholed scaly smeared spiralled sprinkled stained stratified "
    "striped studded swirly veined waffled woven wrinkled zigzagged"
).split()


def shared_attributes() -> Path:
    if not SHARED:
        pytest.skip("VP_SHARED is not set (attribute files in ../shared/attributes)")
    folder = Path(SHARED) / "attributes" / "gpt3"
    if not folder.is_dir():
        pytest.skip(f"no attribute folder {folder}")
    return folder


def test_the_released_attributes_name_every_dtd_class_with_enough_sentences():
    folder = shared_attributes()
    assert len(DTD_CLASSES) == 47
    for kind in ("descriptive", "distinctive"):
        path = attribute_file(kind, "dtd", folder, None)
        per_class = read_attributes(path, DTD_CLASSES, kind)
        drawn = sample_attributes(per_class, DTD_CLASSES, 20, init_generator(0, f"attrvr/{kind}"), kind, str(path))
        assert all(len(d) == 20 and all(len(s) >= 20 for s in d) for d in drawn)


@pytest.mark.slow
def test_attrvr_runs_on_real_textures_with_the_released_attributes(tmp_path):
    folder = shared_attributes()
    dtd10 = Path(SHARED) / "datasets" / "dtd10"
    if not dtd10.is_dir():
        pytest.skip(f"no {dtd10}")
    results = tmp_path / "res"
    args = attrvr_args(results, dtd10, "--descriptive-attributes", str(folder / "dtd_des.json"),
                       "--distinctive-attributes", str(folder / "dtd_dist.json"), "--max-test-samples", "20")  # fmt: skip
    assert main("attrvr", args) == 0
    out = json.loads((run_dir_of(results, "attrvr") / "results.json").read_text())
    assert out["data_sizes"]["train"] == 20 and out["attributes_per_class"] == 6
