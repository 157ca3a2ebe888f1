"""End-to-end runs of the method scripts on tiny data: outputs, resume, eval-only."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, interrupt_at_epoch, same_training, straight_and_resumed, tiny_args, write_image_folder

from runner.cli import main


def run_dir_of(results: Path) -> Path:
    (path,) = [p.parent for p in results.rglob("config.json")]
    return path


@pytest.mark.parametrize("method", ["ilm_vp", pytest.param("flm_vp", marks=pytest.mark.slow), pytest.param("rlm_vp", marks=pytest.mark.slow)])
def test_tiny_run_writes_every_output(method, tmp_path, cifar_root):
    assert main(method, tiny_args(tmp_path / "res", cifar_root)) == 0
    run = run_dir_of(tmp_path / "res")
    assert run.relative_to(tmp_path / "res").parts[:3] == (method, "cifar10", "tiny_test_net")
    for name in ("config.json", "metrics.jsonl", "ckpt.pth", "best.pth", "results.json"):
        assert (run / name).is_file(), name
    assert sorted(p.name for p in (run / "mappings").iterdir()) == ["epoch_001.json", "epoch_002.json"]
    assert list((run / "tensorboard").iterdir())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in ("train_loss", "train_acc", "test_acc", "lr", "mapping_changes", "epoch_seconds", "train_images_per_s"):
        assert key in rows[0]
    results = json.loads((run / "results.json").read_text())
    assert results["best_test_acc"] == max(r["test_acc"] for r in rows)
    assert results["trainable_params"] == 3 * 64 * 64
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["method"] == method and "torch" in config["versions"] and config["git_commit"]
    assert config["hardware"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and config["hardware"]["threads"] >= 1
    mapping = json.loads((run / "mappings" / "epoch_001.json").read_text())
    assert list(mapping) == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert len(set(mapping.values())) == 10 and all(v.startswith("source class") for v in mapping.values())


@pytest.mark.slow
@pytest.mark.parametrize(
    "method, resume",
    [("ilm_vp", ("--resume",)), ("flm_vp", ("--resume",)), ("ilm_vp", ("--resume", "auto")), ("linear_probing", ("--resume",)), ("full_finetune", ("--resume",))],
)
def test_resume_ends_exactly_like_an_uninterrupted_run(method, resume, tmp_path, cifar_root, monkeypatch):
    """Interrupted after epoch 1 of 3, continued with ``--resume`` (or the same command with
    ``--resume auto``, which starts the run and continues it): the same tensors, history and results."""
    auto = resume == ("--resume", "auto")
    args = lambda results: tiny_args(results, cifar_root, "--epochs", "3", *(resume if auto else ()))  # noqa: E731
    straight, resumed = straight_and_resumed(method, args, tmp_path, monkeypatch, resume=() if auto else resume)
    assert same_training(straight, resumed) and len(resumed["history"]) == 3
    a, b = run_dir_of(tmp_path / "straight"), run_dir_of(tmp_path / "cut")
    acc = lambda run: [json.loads(line)["test_acc"] for line in (run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert acc(a) == acc(b) and len(acc(b)) == 3
    assert json.loads((a / "results.json").read_text())["best_test_acc"] == json.loads((b / "results.json").read_text())["best_test_acc"]


@pytest.mark.slow
def test_eval_only_reproduces_the_best_epoch(tmp_path, cifar_root, capsys):
    args = tiny_args(tmp_path / "res", cifar_root)
    assert main("ilm_vp", args) == 0
    run = run_dir_of(tmp_path / "res")
    results = json.loads((run / "results.json").read_text())
    assert main("ilm_vp", args + ["--eval-only"]) == 0
    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["test_acc"] == results["best_test_acc"] and evaluation["epoch"] == results["best_epoch"]


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.slow
def test_existing_run_is_never_clobbered(tmp_path, cifar_root, capsys):
    args = tiny_args(tmp_path / "res", cifar_root)
    assert main("ilm_vp", args) == 0
    run = run_dir_of(tmp_path / "res")
    before = (run / "ckpt.pth").read_bytes()
    capsys.readouterr()
    assert main("ilm_vp", args) == 2
    assert "--resume" in _error(capsys)
    assert (run / "ckpt.pth").read_bytes() == before


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--dataset", "mnist"], "argument --dataset: unknown dataset 'mnist'; choose from abide, cifar10,"),
        (["--network", "alexnet_v9"], "argument --network: unknown network 'alexnet_v9'; choose from efficientnet_lite0,"),
        (["--image-size", "100"], "larger than the 64x64 prompt canvas"),
        (["--mapping", "magic"], "unknown mapping 'magic'"),
        (["--weights", "/nonexistent/w.pth"], "weights file not found: /nonexistent/w.pth"),
    ],
)
def test_bad_flags_give_one_line_errors(tmp_path, cifar_root, capsys, flags, message):
    assert main("ilm_vp", tiny_args(tmp_path / "res", cifar_root) + flags) == 2
    assert message in _error(capsys)


def test_missing_data_error(tmp_path, capsys):
    assert main("ilm_vp", tiny_args(tmp_path / "res", tmp_path / "empty")) == 2
    line = _error(capsys)
    assert "cifar-10-batches-py" in line and str(tmp_path / "empty") in line


def test_unwritable_results_folder(tmp_path, cifar_root, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the results folder should go")
    assert main("ilm_vp", tiny_args(blocker, cifar_root)) == 2
    assert "cannot write to results folder" in _error(capsys)


@pytest.mark.slow
def test_corrupt_and_mismatched_checkpoints(tmp_path, cifar_root, capsys):
    args = tiny_args(tmp_path / "res", cifar_root)
    assert main("ilm_vp", args) == 0
    run = run_dir_of(tmp_path / "res")
    good = (run / "ckpt.pth").read_bytes()
    (run / "ckpt.pth").write_bytes(good[: len(good) // 2])
    capsys.readouterr()
    assert main("ilm_vp", args + ["--resume"]) == 2
    assert "corrupt" in _error(capsys)
    assert main("ilm_vp", args + ["--eval-only", "--checkpoint", str(run / "ckpt.pth")]) == 2
    assert "corrupt" in _error(capsys)
    # a checkpoint of another model: a 32x32 canvas prompt does not fit the 64x64 one
    torch.save({"epoch": 1, "model": {"input_transform.theta": torch.zeros(3, 32, 32)}}, tmp_path / "other.pth")
    assert main("ilm_vp", args + ["--eval-only", "--checkpoint", str(tmp_path / "other.pth")]) == 2
    assert "does not match" in _error(capsys)
    # resuming with other settings is refused: the run folder name is pinned, the lr differs
    (run / "ckpt.pth").write_bytes(good)
    assert main("ilm_vp", args + ["--resume", "--lr", "0.5", "--run-name", run.name]) == 2
    assert "other settings (lr)" in _error(capsys)


@pytest.mark.slow
def test_scripts_run_from_any_directory_and_fail_cleanly(tmp_path, cifar_root):
    env = {"VP_DOWNLOAD": "0", "PATH": "/usr/bin:/bin"}
    script = REPO / "experiments" / "cnn" / "rlm_vp.py"
    bad = subprocess.run(
        [sys.executable, str(script), "--dataset", "nope", "--results-path", str(tmp_path / "r")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().startswith("error: argument --dataset: unknown dataset 'nope'")
    good = subprocess.run(
        [sys.executable, str(script), "--network", "efficientnet_lite0", "--dataset", "cifar10", "--data-path", str(cifar_root),
         "--results-path", str(tmp_path / "r"), "--epochs", "1", "--max-train-samples", "10", "--max-test-samples", "10", "--device", "cpu"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert good.returncode == 0, good.stderr
    assert "epoch 1/1" in good.stdout and "Traceback" not in good.stderr


# ---------------------------------------------------------------------------------------------
# The data is part of a run's identity


def _folder_args(results: Path, data: Path, *extra: str) -> list[str]:
    return tiny_args(results, data, "--dataset", "folder", "--image-size", "16", *extra)


@pytest.mark.slow
def test_two_data_locations_get_two_run_folders(tmp_path):
    a = write_image_folder(tmp_path / "a", ["x", "y"], {"train": 4, "test": 2}, size=16)
    b = write_image_folder(tmp_path / "b", ["x", "y"], {"train": 5, "test": 2}, size=16)
    assert main("ilm_vp", _folder_args(tmp_path / "res", a)) == 0
    assert main("ilm_vp", _folder_args(tmp_path / "res", b)) == 0  # the same flags, another dataset: not "already holds a run"
    configs = [json.loads(p.read_text()) for p in sorted((tmp_path / "res").rglob("config.json"))]
    assert len(configs) == 2 and len({c["resolved"]["run_dir"] for c in configs}) == 2
    assert sorted(c["data"]["location"] for c in configs) == [str(a.resolve()), str(b.resolve())]
    assert len({c["data"]["fingerprint"] for c in configs}) == 2


def test_resume_and_eval_only_on_other_data_are_refused(tmp_path, monkeypatch, capsys):
    a = write_image_folder(tmp_path / "a", ["x", "y"], {"train": 4, "test": 2}, size=16)
    b = write_image_folder(tmp_path / "b", ["x", "y"], {"train": 5, "test": 2}, size=16)
    with monkeypatch.context() as patch:
        interrupt_at_epoch(patch)
        assert main("ilm_vp", _folder_args(tmp_path / "res", a)) == 130
    run = run_dir_of(tmp_path / "res")
    capsys.readouterr()
    # b's own folder has nothing; the message names the run on a
    assert main("ilm_vp", _folder_args(tmp_path / "res", b, "--resume")) == 2
    line = _error(capsys)
    assert line.startswith("error: nothing to resume in ") and f"{run} holds a run of these settings on the data in {a}" in line
    assert line.endswith(f"this command reads {b}")
    # the folder pinned with --run-name: the checkpoint's fingerprint decides
    pinned = ["--run-name", run.name]
    fingerprint = json.loads((run / "config.json").read_text())["data"]["fingerprint"]
    for flag in ("--resume", "--eval-only"):
        assert main("ilm_vp", _folder_args(tmp_path / "res", b, flag, *pinned)) == 2
        line = _error(capsys)
        assert f"was trained on other data: {a} ({fingerprint}), this run reads {b} (sha256:" in line
    # the files under a changed since: refused as well
    extra = a / "train" / "x" / "0100.png"
    extra.write_bytes((a / "train" / "x" / "0000.png").read_bytes())
    assert main("ilm_vp", _folder_args(tmp_path / "res", a, "--resume")) == 2
    assert "was trained on other data" in _error(capsys)
    extra.unlink()
    # the same files copied elsewhere are the same data
    copy = tmp_path / "copy"
    shutil.copytree(a, copy)
    assert main("ilm_vp", _folder_args(tmp_path / "res", copy, "--resume", *pinned)) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert main("ilm_vp", _folder_args(tmp_path / "res", a, "--eval-only")) == 0


def parsed_config(method: str, *flags: str):
    from algorithms.methods import FAMILIES, get_method
    from runner.config import build_parser, config_from_args

    spec = get_method(method)
    family = FAMILIES[spec.family]
    args = build_parser(method).parse_args(list(flags))
    return config_from_args(method, args), family


@pytest.mark.parametrize(
    "method, flags, expected",
    [
        ("blm_vp", ["--dataset", "cifar10"], 256),
        ("blmplus_vp", ["--dataset", "dtd"], 64),
        ("blm_vp", ["--dataset", "oxfordpets"], 64),
        ("ilm_tp_vp", ["--dataset", "flowers102", "--mapping", "blm"], 256),  # CLIP with BLM: BLM's recipe
        ("ilm_vp", ["--dataset", "dtd", "--mapping", "blmplus"], 64),
        ("blm_vp", ["--dataset", "dtd", "--batch-size", "16"], 16),  # an explicit batch size wins
        ("ilm_vp", ["--dataset", "dtd"], None),  # ILM: the dataset's
    ],
)
def test_blm_mappings_default_to_blms_batch_sizes(method, flags, expected):
    config, _ = parsed_config(method, *flags)
    assert config.batch_size == expected


def test_decode_defaults_and_decode_size():
    """CLIP methods decode from the stored file at CLIP's input size, except datasets stored at one
    smaller size (resized on the device); CNN methods squash to the dataset's size."""
    from runner.cli import decode_size

    for method in ("ilm_tp_vp", "single_tp_vp", "clip_linear_probe"):
        config, family = parsed_config(method, "--dataset", "flowers102")
        assert config.decode == "crop" and decode_size(config, family) == 224
    config, family = parsed_config("ilm_tp_vp", "--dataset", "cifar10")
    assert decode_size(config, family) == 32  # stored 32x32: CLIPPreprocess resizes it on the device
    config, family = parsed_config("ilm_tp_vp", "--dataset", "flowers102", "--network", "ViT-L/14-336")
    assert decode_size(config, family) == 336
    config, family = parsed_config("ilm_tp_vp", "--dataset", "flowers102", "--image-size", "160")
    assert decode_size(config, family) == 160
    config, family = parsed_config("ilm_tp_vp", "--dataset", "flowers102", "--decode", "squash")
    assert decode_size(config, family) is None  # the dataset's 128, upsampled on the device (the old path)
    config, family = parsed_config("ilm_vp", "--dataset", "flowers102")
    assert config.decode == "squash" and decode_size(config, family) is None
    config, family = parsed_config("linear_probing", "--dataset", "folder", "--decode", "crop")
    assert decode_size(config, family) is None  # CNN methods: --image-size or the dataset's


def test_crop_decoding_reaches_the_run(tmp_path, folder_dataset):
    """--decode crop end to end: the run's images are the crop-decoded files, recorded in config.json."""
    from data.image_io import read_image
    from data.registry import load_dataset

    flags = ["--dataset", "folder", "--decode", "crop", "--image-size", "24", "--epochs", "1"]
    assert main("linear_probing", tiny_args(tmp_path / "res", folder_dataset) + flags) == 0
    saved = json.loads((run_dir_of(tmp_path / "res") / "config.json").read_text())
    assert saved["config"]["decode"] == "crop" and saved["resolved"]["image_size"] == [24, 24]
    data = load_dataset("folder", folder_dataset, image_size=24, decode="crop")
    first = sorted((folder_dataset / "train").rglob("*.png"))[0]
    assert torch.equal(data.train.images[0], torch.from_numpy(read_image(first, (24, 24), "crop").transpose(2, 0, 1).copy()))
    squashed = load_dataset("folder", folder_dataset, image_size=24)
    assert not torch.equal(squashed.train.images, data.train.images)  # bilinear vs bicubic: another input


@pytest.mark.slow
def test_a_checkpoint_computed_in_fp16_is_not_resumed_or_evaluated_in_fp32_unless_allowed(tmp_path, cifar_root, capsys, monkeypatch):
    """A CUDA fp16 checkpoint faked on the CPU: its saved identity says cuda-fp16 (issue 23)."""
    args = tiny_args(tmp_path / "res", cifar_root)
    with monkeypatch.context() as m:
        interrupt_at_epoch(m)
        assert main("ilm_vp", args) == 130
    run = run_dir_of(tmp_path / "res")
    for name in ("ckpt.pth", "best.pth"):
        state = torch.load(run / name, weights_only=False)
        state["config"]["arithmetic"] = "cuda-fp16"
        if name == "ckpt.pth":
            state["scaler"] = {"scale": 1024.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 3}
        torch.save(state, run / name)
    capsys.readouterr()
    assert main("ilm_vp", args + ["--resume"]) == 2
    line = _error(capsys)
    assert line.startswith("error: checkpoint ") and "computed in cuda-fp16, this run computes in cpu-fp32" in line
    assert main("ilm_vp", args + ["--eval-only"]) == 2
    assert "computed in cuda-fp16" in _error(capsys)
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1  # nothing was trained
    assert main("ilm_vp", args + ["--resume", "--allow-precision-change"]) == 0
    assert "--allow-precision-change: checkpoint" in capsys.readouterr().out
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2


def test_nothing_to_resume_names_the_run_of_these_settings_computed_on_a_gpu(tmp_path, cifar_root, capsys):
    args = tiny_args(tmp_path / "res", cifar_root, "--epochs", "1", "--scheduler", "constant")
    assert main("ilm_vp", args) == 0
    run = run_dir_of(tmp_path / "res")
    config = json.loads((run / "config.json").read_text())
    config["config"]["arithmetic"] = "cuda-fp16"  # as a CUDA run of the same flags writes it
    (run / "config.json").write_text(json.dumps(config))
    gpu_run = run.rename(run.parent / "seed7-0000cuda")
    capsys.readouterr()
    assert main("ilm_vp", args + ["--resume"]) == 2
    line = _error(capsys)
    assert line.startswith("error: nothing to resume in ")
    assert f"{gpu_run} holds a run of these settings computed in cuda-fp16" in line and "--run-name seed7-0000cuda --allow-precision-change" in line


# ---------------------------------------------------------------------------------------------
# --resume auto: one command for the first start and every requeue


def _epochs(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_resume_auto_starts_then_continues(tmp_path, cifar_root, capsys):
    args = tiny_args(tmp_path / "res", cifar_root, "--resume", "auto")
    assert not (tmp_path / "res").exists()
    assert main("ilm_vp", args) == 0  # nothing there: a new run
    run = run_dir_of(tmp_path / "res")
    assert _epochs(run) == [1, 2]
    first = json.loads((run / "results.json").read_text())
    assert main("ilm_vp", args) == 0  # a finished run: continued, with nothing left to train
    assert _epochs(run) == [1, 2] and json.loads((run / "results.json").read_text())["best_test_acc"] == first["best_test_acc"]
    assert "error" not in capsys.readouterr().err


def test_resume_auto_refuses_a_folder_holding_another_run(tmp_path, cifar_root, capsys):
    pinned = ("--run-name", "mine", "--scheduler", "constant")
    assert main("ilm_vp", tiny_args(tmp_path / "res", cifar_root, *pinned, "--epochs", "1")) == 0
    run = run_dir_of(tmp_path / "res")
    before = (run / "ckpt.pth").read_bytes()
    capsys.readouterr()
    assert main("ilm_vp", tiny_args(tmp_path / "res", cifar_root, *pinned, "--epochs", "1", "--lr", "0.5", "--resume", "auto")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: --resume auto: run folder") and "(settings that differ: lr)" in err
    assert (run / "ckpt.pth").read_bytes() == before


def test_resume_takes_only_auto(tmp_path, cifar_root, capsys):
    assert main("ilm_vp", tiny_args(tmp_path / "res", cifar_root, "--resume", "always")) == 2
    assert "argument --resume: expected nothing or auto, got 'always'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Weights before data: a missing weights file is reported before any image is decoded


@pytest.fixture
def undecodable_folder(folder_dataset, monkeypatch):
    """The folder dataset with a corrupt image, and a decoder that fails the test if it is reached."""
    (folder_dataset / "train" / "tulip" / "0000.png").write_bytes(b"not a png")

    def read_image(*args, **kwargs):
        raise AssertionError("an image was decoded before the weights were resolved")

    import data.image_io

    monkeypatch.setattr(data.image_io, "read_image", read_image)
    return folder_dataset


def test_missing_network_weights_are_reported_before_decoding(tmp_path, undecodable_folder, monkeypatch, capsys):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))
    args = ["--network", "resnet18", "--dataset", "folder", "--data-path", str(undecodable_folder), "--results-path", str(tmp_path / "r"),
            "--epochs", "1", "--scheduler", "constant", "--device", "cpu"]  # fmt: skip
    assert main("ilm_vp", args) == 2
    assert _error(capsys).startswith(f"error: weights for 'resnet18' not found: expected {tmp_path / 'empty_hub' / 'checkpoints'}")
    assert main("linear_probing", args) == 2
    assert "weights for 'resnet18' not found" in _error(capsys)
    assert not (tmp_path / "r").exists()


def test_missing_clip_weights_are_reported_before_decoding(tmp_path, undecodable_folder, monkeypatch, capsys):
    import cfg
    from common.errors import UserError
    from models.clip.model import find_weights

    monkeypatch.setattr(cfg, "CACHE_PATH", tmp_path / "cache")
    tag = "laion400m_e31"
    try:
        find_weights("ViT-B-32", tag, download=False)
        pytest.skip(f"CLIP ViT-B-32 {tag} weights are cached on this machine")
    except UserError:
        pass
    args = ["--dataset", "folder", "--data-path", str(undecodable_folder), "--results-path", str(tmp_path / "r"), "--clip-pretrained", tag, "--device", "cpu"]
    attributes = tmp_path / "attributes"
    attributes.mkdir()
    for kind in ("des", "dist"):  # AttrVR reads its attribute files (checked before anything loads) for the folder's classes
        (attributes / f"folder_{kind}.json").write_text(json.dumps({c: ["a sentence of more than twenty characters"] for c in ("Rose_Red", "tulip", "daisy-white")}))
    for method in ("ilm_tp_vp", "clip_linear_probe", "attrvr"):
        flags = {"clip_linear_probe": [], "attrvr": ["--epochs", "1", "--attributes", str(attributes)]}.get(method, ["--epochs", "1", "--scheduler", "constant"])
        assert main(method, args + flags) == 2
        assert _error(capsys).startswith(f"error: CLIP weights for ViT-B-32 ({tag}) not found offline")
