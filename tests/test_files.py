"""Checkpoints carry a checksum of their bytes (common/files.py): flipped bits are refused naming the
file, the previous checkpoint is kept and the refusal says how to continue from it."""
from __future__ import annotations

import shlex
import shutil

import pytest
import torch
from conftest import same_training, straight_and_resumed, tiny_args

from common import files
from common.errors import UserError
from common.files import checksum_matches, load_checkpoint, previous_checkpoint, save_checkpoint
from runner.cli import main


def flip(path, start: int, count: int) -> None:
    data = bytearray(path.read_bytes())
    for i in range(start, start + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def state(epoch: int) -> dict:
    return {"epoch": epoch, "model": {"w": torch.arange(1000, dtype=torch.float32) * epoch}}


def test_a_checkpoint_verifies_and_any_flipped_byte_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "ckpt.pth"
    save_checkpoint(path, state(1))
    assert checksum_matches(path.read_bytes()) is True
    assert torch.equal(load_checkpoint(path)["model"]["w"], state(1)["model"]["w"])
    size = path.stat().st_size
    for where in (40, size // 2, size - 30):  # a zip header, the tensor bytes, the checksum itself
        save_checkpoint(path, state(1))
        flip(path, where, 1)
        with pytest.raises(UserError, match=f"checkpoint {path} is corrupt: its bytes do not match the checksum written with them"):
            load_checkpoint(path)


def test_the_previous_checkpoint_is_kept_and_named_with_the_command_that_recovers_it(tmp_path):
    path = tmp_path / "ckpt.pth"
    save_checkpoint(path, state(1), keep_previous=True)
    assert not previous_checkpoint(path).exists()  # nothing to keep yet
    save_checkpoint(path, state(2), keep_previous=True)
    assert previous_checkpoint(path).name == "ckpt.prev.pth" and load_checkpoint(previous_checkpoint(path))["epoch"] == 1
    flip(path, path.stat().st_size // 2, 100)
    with pytest.raises(UserError) as refused:
        load_checkpoint(path)
    command = f"mv {previous_checkpoint(path)} {path}"
    assert f"the previous checkpoint verifies: continue from it with `{command}`" in str(refused.value)
    # a damaged latest checkpoint is not rotated over the good previous one
    save_checkpoint(path, state(3), keep_previous=True)
    assert load_checkpoint(previous_checkpoint(path))["epoch"] == 1 and load_checkpoint(path)["epoch"] == 3
    flip(previous_checkpoint(path), 100, 10)
    flip(path, 100, 10)
    with pytest.raises(UserError, match="no verified previous checkpoint is kept .*--overwrite"):
        load_checkpoint(path)


def test_a_checkpoint_written_before_checksums_loads_with_one_note(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(files, "_unverified_noted", set())
    path = tmp_path / "old.pth"
    torch.save(state(4), path)
    assert checksum_matches(path.read_bytes()) is None
    assert load_checkpoint(path)["epoch"] == 4 and load_checkpoint(path)["epoch"] == 4
    assert capsys.readouterr().out.count(f"note: checkpoint {path} has no checksum") == 1


def test_a_run_refuses_its_corrupted_checkpoint_and_continues_exactly_from_the_previous_one(tmp_path, cifar_root, monkeypatch, capsys):
    def args(folder):
        return tiny_args(folder, cifar_root, "--epochs", "3", "--milestones", "0.9", "0.95")

    straight, finished = straight_and_resumed("ilm_vp", args, tmp_path, monkeypatch, stop_epoch=2)
    (run,) = [p.parent for p in (tmp_path / "cut").rglob("ckpt.pth")]
    assert finished["epoch"] == 3 and load_checkpoint(run / "ckpt.prev.pth")["epoch"] == 2
    flip(run / "ckpt.pth", (run / "ckpt.pth").stat().st_size // 2, 2000)
    capsys.readouterr()
    assert main("ilm_vp", [*args(tmp_path / "cut"), "--resume", "auto"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: checkpoint {run / 'ckpt.pth'} is corrupt")
    command = err[0].split("`")[1]
    assert shlex.split(command) == ["mv", str(run / "ckpt.prev.pth"), str(run / "ckpt.pth")]
    shutil.move(*shlex.split(command)[1:])
    assert main("ilm_vp", [*args(tmp_path / "cut"), "--resume", "auto"]) == 0
    resumed = load_checkpoint(run / "ckpt.pth")
    assert resumed["epoch"] == 3 and same_training(straight, resumed)
