"""One prompt registry for CNN and CLIP (models/prompts/registry.py) and typed options (common/options.py).

The proof: a prompt written at test time in one file of its own, with one option, registered by
the public plug-in hook (``VP_PROMPT_MODULES``), trains through a CNN and a CLIP method script and
shows its flag in both ``--help``s; no module of the project is touched.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from clip_helpers import private_cache, run_dir_of, tiny_clip_args  # noqa: F401  (private_cache: a fixture)
from conftest import tiny_args

from common.options import ALWAYS, GIVEN, Options, add_option_flags, option, options_from, record
from models.clip.prompts import build_clip_prompt
from models.prompts import PROMPTS, PromptSpec, build_prompt, option_classes, readers, registry
from models.prompts.lowrank import LowRankOptions
from runner.cli import main
from runner.config import build_parser

REPO = Path(__file__).resolve().parents[1]
MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.5)

STRIPES = '''
"""A test prompt, in one file: horizontal stripes of one trainable colour per channel."""
from dataclasses import dataclass

import torch
from torch import nn

from common.argtypes import positive_int
from common.options import Options, option
from models.prompts.base import PromptSpec, VisualPrompt
from models.prompts.registry import register_prompt


@dataclass(frozen=True)
class StripesOptions(Options):
    stripe_period: int = option(4, "rows from one stripe to the next", type=positive_int, metavar="ROWS")


@register_prompt("stripes_plugin", "horizontal stripes of one trainable colour per channel over the resized image")
class StripesPrompt(VisualPrompt):
    OPTIONS = StripesOptions

    def __init__(self, spec: PromptSpec) -> None:
        super().__init__(spec)
        rows = (torch.arange(spec.out_size) % self.options.stripe_period == 0).float()
        self.register_buffer("rows", rows.view(1, -1, 1).expand(1, spec.out_size, spec.out_size).clone())
        self.colour = nn.Parameter(torch.zeros(spec.channels, 1, 1))

    def pattern(self) -> torch.Tensor:
        return self.colour * self.rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.fit(x) + self.pattern())
'''


@pytest.fixture
def stripes_plugin(tmp_path, monkeypatch):
    """The test prompt's file, imported through VP_PROMPT_MODULES as the package does at import."""
    path = tmp_path / "stripes_prompt.py"
    path.write_text(textwrap.dedent(STRIPES))
    monkeypatch.setenv(registry.PLUGINS_VARIABLE, str(path))
    before = (dict(registry.PROMPTS), dict(registry.PROMPT_DESCRIPTIONS))
    registry.load_plugins()
    yield path
    for table, saved in zip((registry.PROMPTS, registry.PROMPT_DESCRIPTIONS), before):
        table.clear()
        table.update(saved)
    sys.modules.pop("vp_prompt_plugin_stripes_prompt", None)


def help_lines(method: str) -> str:
    return " ".join(build_parser(method).format_help().split())


@pytest.mark.usefixtures("private_cache")
def test_a_prompt_written_in_one_file_trains_through_a_cnn_and_a_clip_script(stripes_plugin, tmp_path, cifar_root):
    for method in ("ilm_vp", "ilm_tp_vp"):
        text = help_lines(method)
        assert "stripes_plugin: horizontal stripes of one trainable colour per channel" in text
        assert "--stripe-period ROWS --prompt stripes_plugin: rows from one stripe to the next (default: 4)" in text
    runs = {
        "ilm_vp": tiny_args(tmp_path / "cnn", cifar_root, "--prompt", "stripes_plugin", "--stripe-period", "3", "--epochs", "1"),
        "ilm_tp_vp": tiny_clip_args(tmp_path / "clip", cifar_root, "--prompt", "stripes_plugin", "--stripe-period", "3", "--epochs", "1",
                                    "--no-zero-shot", prompt_size=None),
    }  # fmt: skip
    for method, argv in runs.items():
        assert main(method, argv) == 0, method
        run = run_dir_of(tmp_path / ("cnn" if method == "ilm_vp" else "clip"), method)
        saved = json.loads((run / "config.json").read_text())["config"]
        assert saved["prompt"] == "stripes_plugin" and saved["extra"]["stripe_period"] == 3
        state = torch.load(run / "ckpt.pth", weights_only=False)["model"]
        colour = state["input_transform.colour" if method == "ilm_vp" else "input_transform.prompt.colour"]
        assert colour.abs().sum() > 0, method  # it trained
        rows = state.get("input_transform.rows", state.get("input_transform.prompt.rows"))
        assert rows is not None and rows[0, ::3, 0].eq(1).all() and rows[0, 1::3, 0].eq(0).all()  # built with its option


def test_a_plugin_named_by_the_variable_is_listed_by_the_script_itself(tmp_path):
    """The public hook as a user meets it: the variable set, the script's --help lists the prompt and its flag."""
    path = tmp_path / "stripes_prompt.py"
    path.write_text(textwrap.dedent(STRIPES))
    env = {**os.environ, registry.PLUGINS_VARIABLE: str(path)}
    out = subprocess.run([sys.executable, "experiments/cnn/ilm_vp.py", "--help"], cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout
    assert "stripes_plugin:" in out and "--stripe-period ROWS" in out
    env[registry.PLUGINS_VARIABLE] = str(tmp_path / "missing.py")
    bad = subprocess.run([sys.executable, "experiments/cnn/ilm_vp.py", "--help"], cwd=REPO, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and bad.stderr.startswith("error: VP_PROMPT_MODULES: cannot import")


def test_an_option_of_another_prompt_is_refused(stripes_plugin, tmp_path, cifar_root, capsys):
    assert main("ilm_vp", tiny_args(tmp_path, cifar_root, "--stripe-period", "3")) == 2
    assert capsys.readouterr().err.strip() == "error: --stripe-period applies to --prompt stripes_plugin, not --prompt pad"


# ---------------------------------------------------------------------------------------------
# One low-rank and one ACAVP prompt for both model kinds


@pytest.mark.parametrize("name, options", [("lowrank", LowRankOptions(rank=2)), ("acavp", None)])
def test_lowrank_and_acavp_give_the_same_output_on_a_cnn_and_on_clip(name, options):
    """The same input, statistics and initial values: the prompt a CNN script builds and the one a
    CLIP script builds compute the same thing (CLIP hands it its resized [0, 1] image)."""
    cnn = build_prompt(name, PromptSpec((32, 32), MEAN, STD, out_size=32, init="randn", options=options))
    clip = build_clip_prompt(name, 32, options, "randn", mean=MEAN, std=STD, seed=0)
    assert type(cnn) is type(clip)
    with torch.no_grad():
        for p in cnn.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    clip.load_state_dict(cnn.state_dict())
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert torch.equal(clip(x), cnn(x))
    # ... and both against a plain reference: normalize(x + B @ A) for the low-rank prompt
    if name == "lowrank":
        mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
        torch.testing.assert_close(cnn(x), (x + torch.bmm(cnn.left, cnn.right) - mean) / std, atol=1e-5, rtol=1e-5)


def test_only_the_low_rank_prompt_declares_rank_and_no_source_declares_it_again():
    """``--rank`` is declared once: by the low-rank prompt's options, read by no other class; no
    method family adds it by hand."""
    declaring = [cls for cls in option_classes() if "rank" in cls.__dataclass_fields__]
    assert declaring == [LowRankOptions] and readers(LowRankOptions) == ["lowrank"]
    sources = [p for p in (REPO / "algorithms").rglob("*.py")] + [p for p in (REPO / "runner").rglob("*.py")] + [p for p in (REPO / "models").rglob("*.py")]
    by_hand = [str(p.relative_to(REPO)) for p in sources if re.search(r"""add_argument\(\s*["']--rank["']""", p.read_text())]
    assert by_hand == []
    for method in ("ilm_vp", "ilm_tp_vp", "attrvr"):
        assert [a for a in build_parser(method)._actions if "--rank" in a.option_strings][0].dest == "rank"


@pytest.mark.parametrize("method, prompt, words", [
    ("ilm_vp", "random_patch", "error: argument --prompt: --prompt random_patch does not work with CNN networks: "),
])  # fmt: skip
def test_an_unsupported_prompt_and_model_kind_is_one_error_line(method, prompt, words, tmp_path, cifar_root, capsys):
    assert main(method, tiny_args(tmp_path, cifar_root, "--prompt", prompt)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(words), err


def test_every_registered_prompt_declares_a_kind_or_works_on_both():
    for name, cls in PROMPTS.items():
        assert set(cls.UNSUPPORTED) <= {"cnn", "clip"} and len(cls.UNSUPPORTED) < 2, name
        assert all(reason and "\n" not in reason for reason in cls.UNSUPPORTED.values()), name


# ---------------------------------------------------------------------------------------------
# common/options.py


@dataclass(frozen=True)
class Given(Options):
    size: int = option(3, "a size", type=int)
    name: str | None = option(None, "a name", default_help="none")


@dataclass(frozen=True)
class Always(Options):
    RECORDED = ALWAYS
    depth: int = option(2, "a depth", type=int)
    later: str | None = option(None, "added later", recorded=GIVEN)


def test_options_give_flags_defaults_help_and_what_a_run_keeps():
    import argparse

    parser = argparse.ArgumentParser()
    for cls in (Given, Always):
        add_option_flags(parser, cls, prefix="")
    text = " ".join(parser.format_help().split())
    assert "--size SIZE a size (default: 3)" in text and "--name NAME a name (default: none)" in text
    unset, given = vars(parser.parse_args([])), vars(parser.parse_args(["--size", "5", "--depth", "4", "--later", "x"]))
    # "given" options are kept only when set; "always" ones whatever their value
    assert record(Given, unset) == {} and record(Always, unset) == {"depth": 2}
    assert record(Given, given) == {"size": 5} and record(Always, given) == {"depth": 4, "later": "x"}
    assert options_from(Given, {}) == Given() and options_from(Given, {"size": 5, "depth": 9}) == Given(size=5)


def test_a_config_read_back_gives_the_same_folder_with_options_of_every_kind(tmp_path):
    from algorithms.settings import RunConfig
    from runner.config import config_from_args

    for method, flags in (("ilm_vp", ["--prompt", "lowrank", "--rank", "3"]), ("attrvr", ["--top-k", "2"]), ("ilm_tp_vp", ["--prompt", "lowrank"])):
        config = config_from_args(method, build_parser(method).parse_args(["--data-path", str(tmp_path), *flags]))
        back = RunConfig.from_dict(json.loads(json.dumps(config.to_dict())))
        assert back.config_hash() == config.config_hash() and back.option_values == config.option_values, method


def test_clip_low_rank_runs_move_and_cnn_low_rank_runs_stay():
    """The CLIP low-rank prompt now adds its pattern in pixel units (the CNN one's computation):
    its runs get new folders; the CNN ones keep theirs (tests/test_augment_vocabulary.py pins 4a63f5a7)."""
    from runner.config import config_from_args

    def folder(method, *flags):
        return config_from_args(method, build_parser(method).parse_args(["--data-path", "/datasets", *flags])).config_hash()

    assert folder("ilm_vp", "--prompt", "lowrank") == "4a63f5a7"
    assert folder("ilm_tp_vp", "--prompt", "lowrank") not in ("78ab9d20", "cb63e967")  # its folder before, and before the generators
    assert folder("ilm_tp_vp") == "f2fed3c5"  # the other CLIP prompts stay


# ---------------------------------------------------------------------------------------------
# docs/architecture.md's walk-throughs name real things


def walkthroughs() -> str:
    text = (REPO / "docs" / "architecture.md").read_text()
    start = text.index("## Options: one declaration per flag")
    return text[start : text.index("## How the floors meet")]


def test_the_walkthroughs_name_real_functions_modules_and_files():
    import importlib

    text = walkthroughs()
    named = re.findall(r"`(\w+)` from `([\w.]+)`", text)
    assert len(named) >= 10
    for name, module in named:
        assert hasattr(importlib.import_module(module), name), f"{module}.{name}"
    examples = ("stripes", "my_")  # the files a reader writes
    paths = [p for p in re.findall(r"`([\w/]+\.py)`", text) if not any(e in p for e in examples)]
    assert paths and all((REPO / p).is_file() for p in paths), [p for p in paths if not (REPO / p).is_file()]
    for path in ("models/prompts/__init__.py", "algorithms/mappings/__init__.py", "algorithms/methods/__init__.py"):
        assert path in text  # the listing modules the steps name
    assert registry.PLUGINS_VARIABLE in text and "tests/test_prompt_registry.py" in text


def test_the_walkthroughs_name_the_registries_and_their_choices():
    from algorithms.mappings.base import MAPPING_CHOICES
    from algorithms.methods.registry import FAMILIES
    from models.clip.prompts import CLIP_PROMPT_CHOICES
    from models.prompts import PROMPT_CHOICES

    text = walkthroughs()
    assert "PROMPT_CHOICES" in text and "CLIP_PROMPT_CHOICES" in text and PROMPT_CHOICES.what == CLIP_PROMPT_CHOICES.what == "prompt"
    assert MAPPING_CHOICES.what == "mapping" and "VisualPromptOptions" in text
    from algorithms.methods.visual_prompt import VisualPromptOptions

    assert VisualPromptOptions in FAMILIES["visual_prompt"].options  # the family the mapping step names


@pytest.mark.parametrize("method", ["ilm_vp", "ilm_tp_vp", "attrvr", "linear_probing", "clip_linear_probe"])
def test_generated_help_is_plain_text(method):
    text = build_parser(method).format_help()
    assert "``" not in text and "docstring" not in text and ":class:" not in text
