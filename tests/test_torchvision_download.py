"""A failed download leaves no folder or partial file behind, and its message names a real document."""
from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import pytest
import torchvision.datasets
from conftest import tiny_args

import cfg
from common.errors import UserError
from data.torchvision_download import download_with_torchvision, first_missing
from runner.cli import main


class FailingDownload:
    """Stands in for a torchvision dataset class: writes a partial archive and a folder, then fails."""

    calls: list[str] = []

    def __init__(self, root: str, download: bool, **kwargs) -> None:
        FailingDownload.calls.append(root)
        Path(root, "cifar-10-python.tar.gz").write_bytes(b"partial")
        Path(root, "cifar-10-batches-py").mkdir()
        raise URLError("Name or service not known")


@pytest.fixture
def failing(monkeypatch):
    FailingDownload.calls = []
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FailingDownload)
    return FailingDownload


def test_a_failed_download_removes_the_folders_it_created(tmp_path, failing):
    root = tmp_path / "path" / "to" / "datasets"
    with pytest.raises(UserError, match="could not be downloaded .*docs/datasets.md"):
        download_with_torchvision("CIFAR10", root, "cifar10", splits=({"train": True},))
    assert failing.calls == [str(root)]  # it did create the folders and write into them
    assert list(tmp_path.iterdir()) == []


def test_a_failed_download_into_an_existing_root_removes_only_what_it_wrote(tmp_path, failing):
    (tmp_path / "svhn").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError):
        download_with_torchvision("CIFAR10", tmp_path, "cifar10", splits=({"train": True},))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "svhn"]


def test_the_first_missing_folder_of_a_path(tmp_path):
    assert first_missing(tmp_path) is None
    assert first_missing(tmp_path / "a" / "b" / "c") == tmp_path / "a"


def test_a_copied_placeholder_path_fails_in_one_line_and_leaves_nothing(tmp_path, failing, monkeypatch, capsys):
    monkeypatch.setattr(cfg, "DOWNLOAD", True)
    data = tmp_path / "path" / "to" / "datasets"
    assert main("ilm_vp", tiny_args(tmp_path / "results", data)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: dataset 'cifar10' is missing under") and err.count("\n") == 1
    assert failing.calls and not (tmp_path / "path").exists() and not (tmp_path / "results").exists()
