"""The prompt contract: pattern() in pixel units for the prompts that say so, snapshot pictures that clip
nothing, and initial values drawn from the spec's generator whatever was built before."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from algorithms.methods.visual_prompt import prompt_spec
from algorithms.settings import RunConfig
from common.errors import UserError
from common.seeding import init_generator
from models.clip.prompts import PromptedCLIPInput, build_clip_prompt
from models.patterns import LowRankPattern, signed_picture
from models.prompts import PROMPTS, PromptSizeOptions, PromptSpec
from models.prompts.lowrank import LowRankOptions
from models.prompts.smm import SmmOptions
from runner.snapshots import prompt_picture, read_prompt_png, save_prompt_png

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.5)


def spec(**kw) -> PromptSpec:
    return PromptSpec((8, 8), MEAN, STD, out_size=16, **kw)


def built(name: str, **kw):
    """The prompt ``name`` on a 16 px network (SMM with 4 px mask patches)."""
    if name == "smm":
        kw.setdefault("options", SmmOptions(mask_patch=4))
    return PROMPTS[name](spec(**kw))


def clip_prompt(name: str, size: int, prompt_size: int, init: str, **kw):
    options = PromptSizeOptions(prompt_size) if name in ("padding", "fixed_patch", "random_patch", "resize_padding") else None
    return build_clip_prompt(name, size, options, init, **kw)


# ---------------------------------------------------------------------------------------------
# pattern(): what the network's input gains, in pixel units


@pytest.mark.parametrize("name", ["watermark", "lowrank", "smm"])
def test_pattern_is_what_the_prompt_adds_to_the_resized_image_in_pixel_units(name):
    prompt = built(name, init="randn").eval()
    if name == "smm":  # a constant mask of 1: the prompt adds pattern() itself
        last = prompt.mask_network[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.fill_(1.0)
    x = torch.rand(2, 3, 16, 16)
    pixels = prompt(x) * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
    torch.testing.assert_close(pixels - x, prompt.pattern().expand(2, -1, -1, -1), atol=1e-5, rtol=0)


def test_a_bad_init_is_a_user_error_for_every_prompt():
    with pytest.raises(UserError, match="unknown prompt init 'ones'"):
        PromptSpec((8, 8), MEAN, STD, init="ones")
    with pytest.raises(UserError, match="unknown prompt init 'ones'"):
        clip_prompt("lowrank", 16, 4, "ones")


def test_randn_scale_per_prompt():
    """One rule: randn is N(0, RANDN_SCALE^2) per value; 1 behind pad's sigmoid, 0.01 for additive patterns."""
    big = PromptSpec((8, 8), MEAN, STD, out_size=128, init="randn")
    assert abs(float(PROMPTS["pad"](big).theta.detach().std()) - 1.0) < 0.02
    assert abs(float(PROMPTS["watermark"](big).delta.detach().std()) - 0.01) < 0.0002
    assert abs(float(PROMPTS["smm"](big).delta.detach().std()) - 0.01) < 0.0002


# ---------------------------------------------------------------------------------------------
# Pictures


def test_signed_picture_by_hand_negative_values_are_not_clipped():
    pattern = torch.tensor([[[-0.2, 0.4], [0.0, 0.1]]])
    picture = signed_picture(pattern)
    assert picture.scale == pytest.approx(0.4)
    torch.testing.assert_close(picture.image, torch.tensor([[[0.25, 1.0], [0.5, 0.625]]]))
    assert float(signed_picture(torch.zeros(1, 2, 2)).image.max()) == 0.5 and signed_picture(torch.zeros(1, 2, 2)).scale == 0.0


def test_watermark_picture_shows_its_negative_half_and_the_png_keeps_the_scale(tmp_path):
    prompt = built("watermark")
    with torch.no_grad():
        prompt.delta[:, :8] = -1.0  # top half negative, bottom half positive, in normalized units
        prompt.delta[:, 8:] = 0.5
    picture = prompt.picture()
    # pixel units: delta * std; the largest |value| is channel 2's 1.0 * 0.5
    assert picture.scale == pytest.approx(0.5) and picture.units == "pixel"
    expected = 0.5 + 0.5 * prompt.pattern().detach() / 0.5
    torch.testing.assert_close(picture.image, expected)
    assert float(picture.image[0, 0, 0]) == pytest.approx(0.5 - 0.5 * 0.25 / 0.5)  # -0.25 px: darker than grey, not 0
    save_prompt_png(tmp_path / "p.png", picture)
    array, back = read_prompt_png(tmp_path / "p.png")
    assert back.scale == pytest.approx(0.5) and array.shape == (16, 16, 3)
    assert array[0, 0, 0] == round(255 * 0.25) and array[0, 0, 2] == 0 and array[15, 0, 2] == round(255 * 0.75)


def test_lowrank_picture_by_hand():
    prompt = built("lowrank", options=LowRankOptions(rank=1))
    with torch.no_grad():
        prompt.left.fill_(1.0)
        prompt.right.copy_(torch.linspace(-0.3, 0.1, 16).expand(3, 1, 16))  # every row: -0.3 .. 0.1
    picture = prompt.picture()
    assert picture.scale == pytest.approx(0.3)
    torch.testing.assert_close(picture.image[:, :, 0], torch.zeros(3, 16))  # -0.3: black
    assert float(picture.image[0, 0, -1]) == pytest.approx(0.5 + 0.5 * 0.1 / 0.3)


def test_smm_picture_is_its_prompt_on_a_grey_image_in_pixel_units_without_touching_the_batch_norms():
    prompt = built("smm", init="randn").train()
    prompt(torch.rand(4, 3, 8, 8))  # moves the running statistics away from their start
    before = {k: v.clone() for k, v in prompt.mask_network.state_dict().items()}
    picture = prompt.picture()
    assert prompt.training and prompt.mask_network.training
    assert all(torch.equal(before[k], v) for k, v in prompt.mask_network.state_dict().items())
    prompt.eval()
    grey = torch.full((1, 3, 16, 16), 0.5)
    added = prompt(grey) - prompt.normalize(grey)  # what the prompt adds to grey, normalized units
    shown = (added[0] * torch.tensor(STD).view(3, 1, 1)).detach()
    scale = float(shown.abs().max())
    assert picture.scale == pytest.approx(scale, rel=1e-5)
    torch.testing.assert_close(picture.image, 0.5 + 0.5 * shown / scale, atol=1e-5, rtol=0)


def test_pad_picture_is_its_pattern_as_it_is():
    prompt = built("pad", init="randn")
    picture = prompt.picture()
    assert picture.scale is None
    torch.testing.assert_close(picture.image, (torch.sigmoid(prompt.theta) * prompt.mask).detach())


def test_clip_prompts_draw_in_normalized_units_and_snapshots_find_them():
    prompt = clip_prompt("padding", 16, 3, "randn")
    model = SimpleNamespace(input_transform=PromptedCLIPInput(torch.nn.Identity(), prompt))
    picture = prompt_picture(model)
    assert picture.units == "normalized" and picture.scale == pytest.approx(float(prompt.pattern().abs().max()))
    assert float(picture.image.min()) < 0.5 < float(picture.image.max())
    assert prompt_picture(SimpleNamespace(input_transform=PromptedCLIPInput(torch.nn.Identity(), None))) is None


def test_the_prompt_figure_titles_each_signed_panel_with_its_scale(tmp_path):
    from tools import figures as plots

    run = tmp_path / "run"
    for epoch, value in ((1, 0.02), (2, -0.5)):
        pattern = torch.zeros(3, 32, 32)
        pattern[:, :16] = value
        save_prompt_png(run / "prompts" / f"epoch_{epoch:03d}.png", signed_picture(pattern))
    snapshots = plots.prompt_snapshots(run)
    assert {label: scale for label, (_, scale) in snapshots.items()} == {"epoch 1": pytest.approx(0.02), "epoch 2": pytest.approx(0.5)}
    assert snapshots["epoch 2"][0][0, 0, 0] == 0  # -0.5 at scale 0.5: black, read back as drawn
    plots.plot_prompts(run, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 0


# ---------------------------------------------------------------------------------------------
# Seeding: the initial prompt depends on the seed only


def build_after(name: str, build_first, init: str = "zero", clip: bool = False) -> dict[str, torch.Tensor]:
    torch.manual_seed(123)
    build_first()
    if clip:
        prompt = clip_prompt(name, 16, 3, init, seed=7)
    else:
        prompt = built(name, init=init, generator=init_generator(7, "prompt"))
    return {k: v.clone() for k, v in prompt.state_dict().items()}


@pytest.mark.parametrize("name, init, clip", [
    ("pad", "randn", False), ("watermark", "randn", False), ("lowrank", "zero", False), ("lowrank", "randn", False),
    ("smm", "zero", False), ("smm", "randn", False), ("lowrank", "zero", True), ("padding", "randn", True), ("random_patch", "randn", True),
])  # fmt: skip
def test_the_same_seed_gives_the_same_initial_prompt_after_networks_of_different_construction(name, init, clip):
    import torchvision

    after_resnet = build_after(name, lambda: torchvision.models.resnet18(), init, clip)  # ~11.7 M random draws
    after_nothing = build_after(name, lambda: None, init, clip)
    assert after_resnet.keys() == after_nothing.keys()
    assert all(torch.equal(after_resnet[k], after_nothing[k]) for k in after_resnet)
    assert any(v.abs().sum() > 0 and v.dtype.is_floating_point for k, v in after_resnet.items() if "running" not in k)  # something random
    if clip:
        other = clip_prompt(name, 16, 3, init, seed=8).state_dict()
    else:
        other = built(name, init=init, generator=init_generator(8, "prompt")).state_dict()
    assert not all(torch.equal(after_resnet[k], other[k]) for k in after_resnet)  # ... and the seed matters


@pytest.mark.parametrize("name", ["pad", "watermark", "lowrank", "smm"])
def test_building_a_prompt_leaves_the_global_random_state_alone(name):
    state = torch.get_rng_state()
    built(name, init="randn")
    assert torch.equal(torch.get_rng_state(), state)


def test_the_run_builds_its_prompt_from_its_seed_generator():
    data = SimpleNamespace(image_size=(8, 8), prompt_mask=None)

    def initial(seed: int, global_seed: int) -> torch.Tensor:
        torch.manual_seed(global_seed)
        config = RunConfig(method="smm_vp", prompt="smm", prompt_init="randn", seed=seed)
        return PROMPTS["smm"](prompt_spec(config, data, MEAN, STD, 16, SmmOptions(mask_patch=4))).delta.detach()

    assert torch.equal(initial(3, 0), initial(3, 99)) and not torch.equal(initial(3, 0), initial(4, 0))


def test_one_low_rank_implementation_for_cnn_and_clip():
    cnn = PROMPTS["lowrank"](PromptSpec((16, 16), MEAN, STD, out_size=16, generator=init_generator(5, "prompt")))
    clip = clip_prompt("lowrank", 16, 3, "zero", seed=5)
    assert type(cnn) is type(clip) and isinstance(cnn.low_rank, LowRankPattern)
    assert torch.equal(cnn.right, clip.right) and np.prod(cnn.left.shape) == np.prod(clip.left.shape)


def test_make_table_keeps_random_start_runs_from_before_the_generators_apart(tmp_path):
    import json

    from tool_fixtures import fake_run

    from tools import tables as mt

    def setting(run, new: bool) -> str:
        written = json.loads((run / "config.json").read_text())
        if new:  # what runner.cli.write_config records since initialisations have their own generators
            written["resolved"] = RunConfig.from_dict(written["config"]).seeding_settings()
            (run / "config.json").write_text(json.dumps(written))
        return mt.read_run(run).setting

    smm_old = setting(fake_run(tmp_path / "a", "smm_vp", "cifar10", "resnet18", 1, 50.0, prompt="smm"), new=False)
    smm_new = setting(fake_run(tmp_path / "b", "smm_vp", "cifar10", "resnet18", 1, 50.0, prompt="smm"), new=True)
    assert smm_old != smm_new and "init_seeding" in smm_new
    pad_old = setting(fake_run(tmp_path / "c", "ilm_vp", "cifar10", "resnet18", 1, 50.0), new=False)
    pad_new = setting(fake_run(tmp_path / "d", "ilm_vp", "cifar10", "resnet18", 1, 50.0), new=True)
    assert pad_old == pad_new  # a zero start draws nothing: old and new runs are one setting


def test_docs_list_every_cnn_prompt_with_its_aliases():
    import re
    from pathlib import Path

    from models.prompts.registry import PROMPT_ALIASES, PROMPT_CHOICES

    text = (Path(__file__).parents[1] / "docs" / "methods.md").read_text()
    section = text[text.index("## Prompts (`--prompt`, CNN scripts)") :]
    section = section[: section.index("\n## ", 5)]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"\| `(\w+)`(?: \(default\))? \| ([^|]*) \|", line)
        if match:
            rows[match[1]] = set(re.findall(r"`(\w+)`", match[2]))
    assert rows == {name: {a for a, n in PROMPT_ALIASES.items() if n == name} for name in PROMPT_CHOICES.names()}


@pytest.mark.slow
def test_a_run_snapshots_a_signed_prompt_with_its_scale(tmp_path, cifar_root):
    from conftest import tiny_args

    from runner.cli import main

    assert main("ilm_vp", tiny_args(tmp_path / "res", cifar_root, "--prompt", "lowrank", "--epochs", "1")) == 0
    (png,) = (tmp_path / "res").rglob("prompts/epoch_001.png")
    array, picture = read_prompt_png(png)
    assert picture.scale is not None and picture.scale > 0 and picture.units == "pixel"
    assert array.min() < 128 < array.max()  # the pattern's negative half is drawn below grey, not clipped away
