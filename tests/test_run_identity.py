"""A run's folder is named by what changes its results (algorithms/settings.py, runner/run_dir.py):
flags documented as result-neutral keep the folder, older folders stay found, run names stay inside
the results tree, and --resume auto says when it starts beside a similar run."""
from __future__ import annotations

import argparse

import pytest
import torch
from conftest import tiny_args

import algorithms.settings as settings
from algorithms.methods import METHOD_CHOICES
from common.errors import UserError
from runner.cli import main
from runner.config import build_parser, config_from_args
from runner.run_dir import check_run_name

NEUTRAL = "results do not depend on it"  # the phrase of a flag's help that promises the same results


def other_value(action: argparse.Action) -> list[str]:
    """Arguments that give ``action`` a value other than its default."""
    if action.nargs == 0:
        return []
    candidates = [str(c) for c in action.choices] if action.choices else ["3", "7", "0.5", "true", "false", "auto", "max", "out.log"]
    for text in candidates:
        try:
            value = action.type(text) if action.type else text
        except (argparse.ArgumentTypeError, ValueError, TypeError):
            continue
        if value != action.default:
            return [text]
    raise AssertionError(f"no value other than the default for {action.option_strings}")


@pytest.mark.parametrize("method", METHOD_CHOICES.names())
def test_every_flag_whose_help_says_results_do_not_depend_on_it_keeps_the_folder(method, tmp_path):
    parser = build_parser(method)
    base = ["--data-path", str(tmp_path), "--results-path", str(tmp_path)]
    default = config_from_args(method, parser.parse_args(base)).run_path()
    neutral = [a for a in parser._actions if a.help and NEUTRAL in " ".join(a.help.split())]
    assert any("--eval-batch-size" in a.option_strings for a in neutral)
    for action in neutral:
        argv = [*base, action.option_strings[0], *other_value(action)]
        assert config_from_args(method, build_parser(method).parse_args(argv)).run_path() == default, argv


def _stopped_after_epoch_1(monkeypatch, argv) -> None:
    from algorithms.engine import Trainer

    original = Trainer.train_epoch

    def interrupted(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "train_epoch", interrupted)
        assert main("ilm_vp", argv) == 130


def _only_run(results):
    (ckpt,) = results.rglob("ckpt.pth")
    return ckpt.parent, torch.load(ckpt, weights_only=False)


def test_eval_batch_size_changed_then_resume_auto_continues_the_same_folder(tmp_path, cifar_root, monkeypatch):
    args = tiny_args(tmp_path, cifar_root, "--resume", "auto")
    _stopped_after_epoch_1(monkeypatch, args)
    folder, _ = _only_run(tmp_path)
    assert main("ilm_vp", [*args, "--eval-batch-size", "8"]) == 0
    again, state = _only_run(tmp_path)
    assert again == folder and state["epoch"] == 2 and len(state["history"]) == 2


def test_a_run_made_when_eval_batch_size_named_its_folder_is_still_found(tmp_path, cifar_root, monkeypatch):
    args = tiny_args(tmp_path, cifar_root, "--eval-batch-size", "8")
    with monkeypatch.context() as old_naming:
        old_naming.setattr(settings, "RESULT_NEUTRAL", ())
        _stopped_after_epoch_1(monkeypatch, args)
    folder, state = _only_run(tmp_path)
    assert state["config"]["eval_batch_size"] == 8  # its identity holds the value, and so does its folder's name
    assert folder.name != config_from_args("ilm_vp", build_parser("ilm_vp").parse_args(args)).run_path().name
    assert main("ilm_vp", [*args, "--resume"]) == 0  # plain --resume finds it
    again, state = _only_run(tmp_path)
    assert again == folder and state["epoch"] == 2
    assert main("ilm_vp", [*args, "--resume", "auto"]) == 0  # and so does --resume auto
    assert _only_run(tmp_path)[0] == folder


def test_resume_auto_starting_afresh_beside_a_run_of_the_same_seed_names_the_differing_flags(tmp_path, cifar_root, capsys):
    args = tiny_args(tmp_path, cifar_root, "--epochs", "1", "--scheduler", "constant", "--resume", "auto")
    assert main("ilm_vp", args) == 0
    first = next(tmp_path.rglob("ckpt.pth")).parent
    capsys.readouterr()
    assert main("ilm_vp", [*args, "--lr", "0.1", "--mapping-interval", "2"]) == 0
    err = capsys.readouterr().err
    assert f"warning: --resume auto starts a new run in {first.parent}/seed7-" in err
    assert f"{first} holds a run of the same method, data, network and seed with other settings (lr, mapping_interval)" in err
    assert main("ilm_vp", [*args, "--seed", "8"]) == 0  # another seed is another experiment: nothing to say
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../x", "../../../escaped", "/tmp/abs", "a/b", ".hidden", "..", ""])
def test_a_run_name_that_leaves_the_results_tree_is_refused(name, tmp_path, cifar_root, capsys):
    with pytest.raises(UserError, match="must be one folder name inside the results tree"):
        check_run_name(name)
    if name == "../x":
        assert main("ilm_vp", tiny_args(tmp_path / "res", cifar_root, "--run-name", name)) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: --run-name '../x' must be one folder name")
        assert not (tmp_path / "res").exists() and not (tmp_path / "x").exists()


@pytest.mark.parametrize("device", ["mps", "meta"])
def test_an_unsupported_device_type_is_one_line_listing_the_supported_ones(device, tmp_path, cifar_root, capsys):
    argv = tiny_args(tmp_path, cifar_root)
    argv[argv.index("--device") + 1] = device
    assert main("ilm_vp", argv) == 2
    assert capsys.readouterr().err == f"error: unsupported device '{device}'; choose from auto, cpu, cuda, cuda:N\n"
