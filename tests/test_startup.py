"""First contact: a script parses its flags, prints ``--help`` and refuses a bad name at the cost of
torch alone, and its help reads as plain text."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

from algorithms.methods import METHODS
from common.choices import Choices, plain_text
from runner.config import build_parser

# imported where they are used (inside functions), never by parsing the flags
HEAVY = ("torchvision", "timm", "open_clip", "matplotlib", "scipy", "optuna", "sklearn", "tensorboard", "PIL")

# in a fresh interpreter: load the script as a module (not as __main__), build its parser and help,
# and give a bad dataset name to its entry point; print which heavy libraries got imported
PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("method_script", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
from runner.config import build_parser
build_parser(sys.argv[2]).format_help()
code = module.main(sys.argv[2], ["--dataset", "no_such_dataset"])
heavy = json.loads(sys.argv[3])
print(json.dumps({"code": code, "loaded": sorted(m for m in sys.modules if m.split(".")[0] in heavy)}))
"""


def probe(script: str, method: str, watched: tuple[str, ...], cwd) -> tuple[dict, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", PROBE, str(REPO / script), method, json.dumps(watched)], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


@pytest.mark.parametrize("script, method", [("experiments/cnn/ilm_vp.py", "ilm_vp"), ("experiments/clip/ilm_tp_vp.py", "ilm_tp_vp")])
def test_parsing_and_a_bad_name_import_none_of_the_heavy_libraries(script, method, tmp_path):
    result, stderr = probe(script, method, (*HEAVY, "torch"), tmp_path)
    assert result["code"] == 2 and "unknown dataset 'no_such_dataset'" in stderr
    assert "torch" in result["loaded"]  # the probe sees what is imported
    assert [name for name in result["loaded"] if name.split(".")[0] != "torch"] == []


@pytest.mark.parametrize("method", sorted(METHODS))
def test_help_reads_as_plain_text(method):
    text = build_parser(method).format_help()
    assert "``" not in text
    assert "docstring" not in text
    assert ":func:" not in text and ":mod:" not in text and ":data:" not in text


def test_plain_text_drops_markup_and_docstring_pointers():
    assert plain_text("Resize to ``out_size``, add the rank-``r`` pattern") == "Resize to out_size, add the rank-r pattern"
    assert plain_text("add ``delta`` times a per-image mask (see the module docstring)") == "add delta times a per-image mask"
    assert plain_text("reads :data:`~models.prompts.PROMPTS` and :func:`fit`") == "reads PROMPTS and fit"
    assert plain_text("(Chen et al., 2023) keeps its parentheses") == "(Chen et al., 2023) keeps its parentheses"


def test_a_choice_described_with_markup_is_listed_as_text():
    choices = Choices("thing", lambda: {"a": "Scale by ``k`` (see :func:`scale`'s docstring)"})
    assert choices.help("things") == "things\n  a: Scale by k"
