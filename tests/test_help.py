"""``--help`` is generated from the registries, shows each method's own defaults, and names are checked before anything loads."""
from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest
from conftest import REPO, TINY_NETWORK, tiny_args

import runner.cli
from algorithms.mappings.base import MAPPING_CHOICES, MAPPING_DESCRIPTIONS, MAPPINGS, register_mapping
from algorithms.methods import FAMILIES, METHODS, get_method
from common.choices import Choices
from common.errors import UserError
from data.registry import DATASETS, register_dataset
from models.clip.prompts import CLIP_PROMPT_CHOICES
from models.networks import NETWORKS
from models.prompts.registry import PROMPT_ALIASES, PROMPT_CHOICES, PROMPT_DESCRIPTIONS, PROMPTS, register_prompt
from runner.cli import main
from runner.config import HelpFormatter, build_parser, config_from_args

SCRIPTS = {path.stem: path for path in (REPO / "experiments").glob("*/*.py") if path.stem != "__init__"}
METHOD_OF_SCRIPT = {"linear_probe": "clip_linear_probe"}  # experiments/clip/linear_probe.py


def listed(help_text: str, name: str) -> bool:
    """``name`` has its own line in a listing (``  name: ...`` or ``  name (also: ...): ...``)."""
    return re.search(rf"^\s+{re.escape(name)}( \(also: [^)]*\))?: ", help_text, re.MULTILINE) is not None


def accepted(method: str) -> dict[str, Choices]:
    """flag -> the registry it lists, for ``method``'s script."""
    family = FAMILIES[get_method(method).family]
    flags = {"--dataset": DATASETS, "--network": family.networks}
    if family.trains_epochs:
        flags["--mapping"] = MAPPING_CHOICES
    if family.prompts is not None:
        flags["--prompt"] = family.prompts
    return flags


def action(parser: argparse.ArgumentParser, dest: str) -> argparse.Action:
    return next(a for a in parser._actions if a.dest == dest)


def rendered(parser: argparse.ArgumentParser, dest: str) -> str:
    """One flag's help as ``--help`` prints it (before line wrapping)."""
    return HelpFormatter(parser.prog)._expand_help(action(parser, dest))


def test_every_method_script_is_a_registered_method():
    assert {METHOD_OF_SCRIPT.get(stem, stem) for stem in SCRIPTS} == set(METHODS)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_registered_name_is_listed_in_the_help_of_every_script_that_accepts_it(method):
    text = build_parser(method).format_help()
    for flag, choices in accepted(method).items():
        assert flag in text
        for name in choices.names():
            assert listed(text, name), f"{method} --help does not list {flag} {name}"
        for alias, name in choices.aliases().items():
            assert re.search(rf"^\s+{re.escape(name)} \(also: [^)]*\b{re.escape(alias)}\b", text, re.MULTILINE), alias
    if "--network" in accepted(method) and accepted(method)["--network"] is NETWORKS:
        assert "any torchvision classifier" in text and "timm model" in text


@pytest.mark.slow
def test_the_real_script_prints_the_listing(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPTS["ilm_vp"]), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for name in ["cifar10", "flowers102", "resnet18", "efficientnet_lite0", "ilm", "blmplus", "linear", "identity", "pad", "watermark"]:
        assert listed(out.stdout, name), name


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_flag_shows_one_default_and_the_methods_own(method):
    parser = build_parser(method)
    for a in parser._actions:
        if isinstance(a, (argparse._HelpAction, argparse._StoreTrueAction, argparse._StoreFalseAction)):
            assert "(default" not in rendered(parser, a.dest), a.option_strings  # on/off switches: the name says it
            continue
        text = rendered(parser, a.dest)
        assert text.count("(default") == 1, (a.option_strings, text)
        assert "None" not in text, (a.option_strings, text)
    flags = {a.dest for a in parser._actions}
    for key, value in get_method(method).defaults.items():
        if key not in flags:
            continue  # a fixed setting of the method, no flag (the CLIP linear probe's mapping)
        shown = " ".join(map(str, value)) if isinstance(value, list) else str(value)
        assert f"(default: {shown})" in rendered(parser, key), (method, key)


def test_clip_and_cnn_help_show_different_optimiser_defaults():
    cnn, clip = build_parser("ilm_vp"), build_parser("ilm_tp_vp")
    assert "(default: 0.01)" in rendered(cnn, "lr") and "(default: adam)" in rendered(cnn, "optimizer")
    assert "(default: 40.0)" in rendered(clip, "lr") and "(default: sgd)" in rendered(clip, "optimizer")
    assert "(default: ViT-B/32)" in rendered(clip, "network") and "(default: padding)" in rendered(clip, "prompt")


def test_a_newly_registered_name_is_listed_and_accepted_with_nothing_else(tmp_path):
    @register_prompt("stripes_test", aliases=("zebra_test",))
    class Stripes:
        """Test prompt: stripes over the image."""

    @register_mapping("constant_test")
    def constant(num_source, num_target, interval, seed):
        """Test mapping: every target reads source 0."""

    register_dataset("tiny_test_set", image_size=8, description="a test dataset")(lambda request: None)
    try:
        parser = build_parser("ilm_vp")
        assert "  stripes_test (also: zebra_test): Test prompt: stripes over the image\n" in rendered(parser, "prompt")
        assert "  constant_test: Test mapping: every target reads source 0\n" in rendered(parser, "mapping")
        assert "  tiny_test_set: a test dataset\n" in rendered(parser, "dataset")
        args = build_parser("ilm_vp").parse_args(["--prompt", "zebra_test", "--mapping", "constant_test", "--dataset", "tiny_test_set"])
        assert (args.prompt, args.mapping, args.dataset) == ("stripes_test", "constant_test", "tiny_test_set")
    finally:
        for table in (PROMPTS, PROMPT_DESCRIPTIONS):
            table.pop("stripes_test")
        PROMPT_ALIASES.pop("zebra_test")
        MAPPINGS.pop("constant_test")
        MAPPING_DESCRIPTIONS.pop("constant_test")
        from data.registry import _REGISTRY

        _REGISTRY.pop("tiny_test_set")


@pytest.fixture
def nothing_loads(monkeypatch):
    """Fail the test if a run gets as far as loading data, a network or CLIP."""

    def refuse(*args, **kwargs):
        raise AssertionError("loaded something before checking the names")

    import algorithms.methods.baselines as baselines
    import algorithms.methods.clip_prompting as clip_prompting
    import algorithms.methods.visual_prompt as visual_prompt

    monkeypatch.setattr(runner.cli, "load_dataset", refuse)
    monkeypatch.setattr(runner.cli, "setup_runtime", refuse)
    for module, name in ((visual_prompt, "load_network"), (baselines, "load_network"), (clip_prompting, "load_clip")):
        monkeypatch.setattr(module, name, refuse)


@pytest.mark.parametrize(
    "method, flags, message",
    [
        ("ilm_vp", ["--dataset", "mnist"], "argument --dataset: unknown dataset 'mnist'; choose from abide, cifar10,"),
        ("ilm_vp", ["--network", "alexnet_v9"], "argument --network: unknown network 'alexnet_v9'; choose from"),
        ("ilm_vp", ["--mapping", "magic"], "argument --mapping: unknown mapping 'magic'; choose from blm, blmplus, flm,"),
        ("ilm_vp", ["--prompt", "stripes"], "argument --prompt: unknown prompt 'stripes'; choose from acavp, fixed_patch, lowrank, pad, resize_padding, smm, watermark"),
        ("ilm_vp", ["--prompt", "random_patch"], "argument --prompt: --prompt random_patch does not work with CNN networks: its per-batch location"),
        ("ilm_tp_vp", ["--prompt", "expansive"], "argument --prompt: unknown prompt 'expansive'; choose from acavp, fixed_patch, lowrank, padding, random_patch, resize_padding, smm, watermark"),
        ("ilm_tp_vp", ["--network", "ViT-X/99"], "argument --network: unknown CLIP model 'ViT-X/99'"),
        ("linear_probing", ["--mapping", "ilm"], "linear_probing trains a new head with one output per target class; --mapping does not apply"),
        ("full_finetune", ["--cache-features"], "full_finetune trains the whole network; --cache-features applies to linear probing only"),
        ("single_tp_vp", ["--template-number", "81"], "argument --template-number: must be an integer in 0..80"),
        ("ilm_vp", ["--weights", "/nonexistent/w.pth"], "weights file not found: /nonexistent/w.pth"),
        ("ilm_tp_vp", ["--clip-weights", "/nonexistent/c.pt"], "CLIP weights file not found: /nonexistent/c.pt"),
    ],
)
def test_a_bad_name_fails_before_anything_loads(method, flags, message, tmp_path, capsys, nothing_loads):
    argv = tiny_args(tmp_path / "res", tmp_path / "no-data-here", *flags)
    if FAMILIES[get_method(method).family].networks is not NETWORKS:
        argv[argv.index("--network") : argv.index("--network") + 2] = []  # CLIP: not a CNN
    assert main(method, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "res").exists()  # no run folder either


def test_a_config_built_in_code_is_checked_the_same_way(tmp_path, nothing_loads):
    config = config_from_args("ilm_vp", build_parser("ilm_vp").parse_args(tiny_args(tmp_path, tmp_path)))
    config.prompt = "stripes"
    with pytest.raises(UserError, match="unknown prompt 'stripes'"):
        runner.cli.run(config)


@pytest.mark.parametrize(
    "method, alias, name",
    [("ilm_vp", "padding", "pad"), ("ilm_vp", "expansive", "pad"), ("ilm_vp", "watermarking", "watermark"), ("ilm_tp_vp", "pad", "padding")],
)
def test_an_alias_is_stored_as_its_name_and_runs_in_the_same_folder(method, alias, name, tmp_path):
    base = ["--results-path", str(tmp_path)] + (["--network", TINY_NETWORK] if method == "ilm_vp" else [])
    by_alias = config_from_args(method, build_parser(method).parse_args(base + ["--prompt", alias]))
    by_name = config_from_args(method, build_parser(method).parse_args(base + ["--prompt", name]))
    assert by_alias.prompt == name and by_alias.run_path() == by_name.run_path()


def test_run_folders_of_the_defaults_keep_their_names():
    """The folder hash of a default run (with a fixed data root: the data's location is part of a run's identity).
    A change here moves every existing run of that method to a new folder: make it on purpose."""
    hashes = {m: config_from_args(m, build_parser(m).parse_args(["--data-path", "/datasets"])).config_hash() for m in ("ilm_vp", "ilm_tp_vp", "linear_probing")}
    assert hashes == {"ilm_vp": "7ebbb4a9", "ilm_tp_vp": "f2fed3c5", "linear_probing": "c67c85e9"}


# Folder hashes measured before prompt initialisations moved to their own generators
# (common.seeding.init_generator): the zero-initialised prompts draw nothing, so they keep them.
ZERO_START_FOLDERS = {
    ("ilm_vp", ()): "7ebbb4a9",
    ("flm_vp", ()): "be154908",
    # the watermark trains augmented by default: those runs moved with per-sample augmentation
    # draws (tests/test_augment_vocabulary.py); without augmentation they keep their folders
    ("ilm_vp", ("--prompt", "watermark", "--augment", "none")): "2f006173",
    ("blm_vp", ("--prompt", "watermark", "--augment", "none")): "77473583",
    ("ilm_tp_vp", ()): "f2fed3c5",
    ("single_tp_vp", ()): "fba8c1cd",
}
# ... and those of the random starts, whose initial prompt (so result) changed: they must move
RANDOM_START_OLD_FOLDERS = {
    ("ilm_vp", ("--prompt", "lowrank")): "a17bb3d9",
    ("smm_vp", ()): "f8f94f60",
    ("ilm_vp", ("--prompt-init", "randn")): "c4112145",
    ("ilm_tp_vp", ("--prompt", "lowrank")): "cb63e967",
}


def folder_hash(method: str, flags: tuple[str, ...]) -> str:
    return config_from_args(method, build_parser(method).parse_args(["--data-path", "/datasets", *flags])).config_hash()


def test_zero_initialised_prompts_keep_their_folders_and_random_starts_move():
    assert {key: folder_hash(*key) for key in ZERO_START_FOLDERS} == ZERO_START_FOLDERS
    for key, old in RANDOM_START_OLD_FOLDERS.items():
        config = config_from_args(key[0], build_parser(key[0]).parse_args(["--data-path", "/datasets", *key[1]]))
        assert config.identity()["init_seeding"] == "per_part" and config.config_hash() != old, key
    assert "init_seeding" not in config_from_args("ilm_vp", build_parser("ilm_vp").parse_args([])).identity()


def test_prompt_registries_of_the_two_families_are_distinct_designs():
    assert PROMPT_CHOICES.resolve("padding") == "pad" and CLIP_PROMPT_CHOICES.resolve("pad") == "padding"
    with pytest.raises(UserError, match="unknown prompt 'expansive'"):
        CLIP_PROMPT_CHOICES.resolve("expansive")


# ---------------------------------------------------------------------------------------------
# The tools: the same listings, one spelling per flag, the old spellings still accepted


def tool(name: str):
    import importlib

    return importlib.import_module(f"tools.{name}")


def test_the_tools_list_every_registered_name_they_accept():
    from algorithms.methods import METHOD_CHOICES

    compare, sweep = tool("compare_mappings").build_cli(), tool("reproduce").build_cli()
    for parser, dest, choices in (
        (compare, "dataset", DATASETS), (compare, "network", NETWORKS), (compare, "mappings", MAPPING_CHOICES),
        (compare, "prompts", PROMPT_CHOICES), (sweep, "datasets", DATASETS), (sweep, "networks", NETWORKS), (sweep, "methods", METHOD_CHOICES),
    ):  # fmt: skip
        text = rendered(parser, dest)
        assert all(listed(text, name) for name in choices.names()), dest


@pytest.mark.parametrize(
    "module, argv, dest, value",
    [
        ("make_table", ["--output", "t"], "output", "t"),
        ("make_table", ["--out", "t"], "output", "t"),  # the old spelling
        ("make_table", ["-o", "t"], "output", "t"),
        ("bench", ["--max-train-samples", "8", "--max-test-samples", "4"], "max_train_samples", 8),
        ("bench", ["--train-samples", "8", "--test-samples", "4"], "max_test_samples", 4),  # the old spellings
        ("bench", ["-o", "b.json"], "output", "b.json"),
    ],
)
def test_one_spelling_per_flag_and_the_old_ones_still_work(module, argv, dest, value):
    parser = tool(module).build_cli()
    assert getattr(parser.parse_args(argv), dest) == value
    shown = parser.format_help()
    assert "--out " not in shown and "--train-samples" not in shown.replace("--max-train-samples", "")  # old spellings hidden


def test_plots_take_output_and_the_old_out(tmp_path):
    plots = tool("plots")
    for flag in ("-o", "--output", "--out"):
        args = plots.build_cli().parse_args(["curves", str(tmp_path), flag, str(tmp_path / "c.png")])
        assert args.output == tmp_path / "c.png"
    assert "--out " not in plots.build_cli()._subparsers._group_actions[0].choices["curves"].format_help()


def test_tool_flag_errors_are_one_line(capsys):
    assert tool("make_table").main(["--protocol", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: argument --protocol: invalid choice: 'nope'"), err
