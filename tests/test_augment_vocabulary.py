"""--augment's vocabulary (data/augment_recipes.py): names, old spellings, --help from the registry,
and run folders: unchanged without augmentation, by recipe (not spelling) with it."""
from __future__ import annotations

import pytest
from conftest import tiny_args

import algorithms.methods  # noqa: F401  (registers the methods)
from common.errors import UserError
from data import augment_recipes
from data.augment import pad_crop_flip
from data.augment_recipes import ALIASES, RECIPES, build_recipe, recipe_resizes, resolve_recipe
from models.prompts import PROMPTS
from runner.cli import main
from runner.config import build_parser, config_from_args


def folder_hash(method: str, *flags: str) -> str:
    return config_from_args(method, build_parser(method).parse_args(["--data-path", "/datasets", *flags])).config_hash()


# Computed on main before per-sample draws (commit 9a2aae7): runs without augmentation keep them.
UNAUGMENTED_FOLDERS = [
    ("ilm_vp", (), "7ebbb4a9"),
    ("ilm_vp", ("--no-augment",), "dfba934b"),
    ("ilm_vp", ("--augment", "none"), "dfba934b"),
    ("ilm_vp", ("--prompt", "watermark", "--augment", "none"), "2f006173"),
    ("ilm_vp", ("--prompt", "watermark", "--no-augment"), "2f006173"),
    ("smm_vp", ("--augment", "none"), "4181b9ff"),
    ("ilm_vp", ("--prompt", "lowrank"), "4a63f5a7"),
    ("linear_probing", (), "c67c85e9"),
    ("linear_probing", ("--train-augment", "none"), "c67c85e9"),
    ("linear_probing", ("--augment", "none"), "c67c85e9"),
    ("full_finetune", ("--train-augment", "none"), "419e9ea2"),
    ("full_finetune", ("--augment", "none"), "419e9ea2"),
]


@pytest.mark.parametrize("method, flags, expected", UNAUGMENTED_FOLDERS)
def test_runs_without_augmentation_keep_their_folders(method, flags, expected):
    assert folder_hash(method, *flags) == expected


# The same runs on main, with augmentation: per-sample draws change their results, so their
# folders move (augment + augment_draws in the identity); every spelling of one recipe shares one.
AUGMENTED = [
    # method, spellings of one recipe (the first is main's), its folder on main, its folder now
    ("ilm_vp", [("--augment", "crop_flip"), ("--augment", "pad_crop_flip")], "053e3779", "b13bb839"),
    ("ilm_vp", [("--augment", "trivialaugment"), ("--augment", "trivialaugment_wide+pad_crop_flip"), ("--augment", "trivialaugment+pad_crop_flip")], "768082e0", "afedd0bc"),
    ("ilm_vp", [("--prompt", "watermark"), ("--prompt", "watermark", "--augment", "crop_flip"), ("--prompt", "watermark", "--augment", "resize4_crop"),
                ("--prompt", "watermark", "--augment", "resize_crop")], "5eb8a675", "419dcf00"),
    ("blm_vp", [("--prompt", "watermark"), ("--prompt", "watermark", "--augment", "resize4_crop")], "05b00c7c", "fc56ebb9"),
    ("smm_vp", [(), ("--augment", "crop_flip"), ("--augment", "resize32_crop_flip"), ("--augment", "smm_crop_flip")], "b6309829", "03afddbc"),
    ("smm_vp", [("--augment", "trivialaugment"), ("--augment", "trivialaugment_wide+resize32_crop_flip")], "3756c57a", "b596b959"),
    ("ilm_vp", [("--prompt", "lowrank", "--augment", "crop_flip"), ("--prompt", "lowrank", "--augment", "resize32_crop_flip")], "f12ca964", "abe83834"),
    ("linear_probing", [("--train-augment", "crop_flip"), ("--augment", "crop_flip"), ("--augment", "random_resized_crop_flip"),
                        ("--train-augment", "resized_crop_flip")], "601a36e1", "57cb6d25"),
    ("full_finetune", [(), ("--train-augment", "crop_flip"), ("--augment", "random_resized_crop_flip")], "60a9dac1", "046b7245"),
]  # fmt: skip


@pytest.mark.parametrize("method, spellings, on_main, now", AUGMENTED)
def test_augmented_runs_are_named_by_their_recipe_and_draw_scheme(method, spellings, on_main, now):
    hashes = {folder_hash(method, *flags) for flags in spellings}
    assert hashes == {now} and now != on_main


def test_the_identity_holds_the_canonical_recipe_and_the_draw_scheme():
    config = config_from_args("ilm_vp", build_parser("ilm_vp").parse_args(["--prompt", "watermark", "--augment", "crop_flip"]))
    identity = config.identity()
    assert identity["augment"] == "resize4_crop" and identity["augment_draws"] == "per_sample"
    assert "augment" not in identity["extra"]  # the spelling does not name the folder
    plain = config_from_args("ilm_vp", build_parser("ilm_vp").parse_args([])).identity()
    assert "augment_draws" not in plain and "augment" not in plain


@pytest.mark.parametrize(
    "spelling, legacy, expected",
    [
        ("none", None, "none"),
        ("crop_flip", {"crop_flip": "pad_crop_flip"}, "pad_crop_flip"),
        ("resize_crop", None, "resize4_crop"),
        ("smm_crop_flip", None, "resize32_crop_flip"),
        ("resized_crop_flip", None, "random_resized_crop_flip"),
        ("trivialaugment", None, "trivialaugment_wide"),  # a step alias without the caller's legacy meaning
        ("trivialaugment", {"trivialaugment": "trivialaugment_wide+pad_crop_flip"}, "trivialaugment_wide+pad_crop_flip"),
        ("resize32_crop_flip+trivialaugment", None, "resize32_crop_flip+trivialaugment_wide"),
    ],
)
def test_resolve_recipe(spelling, legacy, expected):
    assert resolve_recipe(spelling, legacy) == expected


@pytest.mark.parametrize("spelling", ["mixup", "crop_flip", "pad_crop_flip+", "none+none", "pad_crop_flip+none"])
def test_a_bad_recipe_is_one_user_error(spelling):
    with pytest.raises(UserError, match="--augment"):
        resolve_recipe(spelling)


def test_every_alias_names_a_registered_recipe_and_resizing_is_declared():
    assert set(ALIASES.values()) <= set(RECIPES)
    assert recipe_resizes("resize4_crop") and recipe_resizes("trivialaugment_wide+resize32_crop_flip")
    assert not recipe_resizes("pad_crop_flip") and not recipe_resizes("random_resized_crop_flip") and not recipe_resizes("none")
    assert build_recipe("none", (8, 8)) is None


@pytest.mark.parametrize("method", ["ilm_vp", "linear_probing"])
def test_help_lists_every_recipe_from_the_registry_and_a_new_one_needs_one_registration(method, monkeypatch):
    monkeypatch.setattr(augment_recipes, "RECIPES", dict(RECIPES))
    augment_recipes.register_recipe("acavp_test_recipe", pad_crop_flip, "a recipe registered by a test")
    text = " ".join(build_parser(method).format_help().split())
    for name, recipe in augment_recipes.RECIPES.items():
        assert f"{name}" in text and " ".join(recipe.description.split()) in text
    assert resolve_recipe("acavp_test_recipe+trivialaugment_wide") == "acavp_test_recipe+trivialaugment_wide"


def test_the_baselines_old_flag_is_accepted_and_hidden():
    parser = build_parser("linear_probing")
    assert parser.parse_args(["--train-augment", "crop_flip"]).train_augment == "crop_flip"
    assert parser.parse_args(["--augment", "crop_flip"]).train_augment == "crop_flip"
    assert "--train-augment" not in parser.format_help() and "--augment RECIPE" in parser.format_help()


def test_every_prompts_recipes_are_canonical_names():
    for name, cls in PROMPTS.items():
        for recipe in (getattr(cls, "DEFAULT_AUGMENT", "none"), getattr(cls, "CROP_FLIP", "none")):
            assert resolve_recipe(recipe) == recipe, (name, recipe)


@pytest.mark.parametrize("method", ["ilm_vp", "full_finetune"])
def test_a_bad_augment_on_the_command_line_is_one_error_line(method, tmp_path, cifar_root, capsys):
    assert main(method, tiny_args(tmp_path, cifar_root, "--augment", "mixup")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown --augment 'mixup'; choose from none, pad_crop_flip")
    assert not (tmp_path / method).exists()
