"""data/augment.py and --augment: TrivialAugment against torchvision, SMM's crop, per-prompt recipes,
training batches only, and a resumed run that replays the augmentation exactly."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2 as T
from conftest import TINY_NETWORK, tiny_args

import algorithms.engine as engine
from algorithms.engine import Trainer
from algorithms.methods.visual_prompt import build_visual_prompt
from algorithms.settings import RunConfig
from common.errors import UserError
from data.augment import (
    AUGMENTATIONS,
    TRIVIALAUGMENT_OPS,
    build_augment,
    compose,
    draw_trivialaugment,
    smm_crop_flip,
    trivialaugment,
)
from data.registry import SubsetSpec, load_dataset
from runner.cli import main
from runner.devices import setup_runtime
from runner.run_dir import RunDir


def test_trivialaugment_equals_torchvision_trivialaugmentwide_image_by_image():
    """Image ``i`` gets exactly what the ``i``-th call of torchvision's transform gives from the same stream."""
    x = torch.rand(8, 3, 24, 24)
    augment = trivialaugment()
    seen = set()
    for seed in range(40):
        ours = augment(x, torch.Generator().manual_seed(seed))
        torch.manual_seed(seed)
        reference = torch.cat([T.TrivialAugmentWide()(x[i : i + 1]) for i in range(len(x))])
        assert torch.equal(ours, reference), seed
        seen |= {name for name, _ in draw_trivialaugment(len(x), torch.Generator().manual_seed(seed))}
    assert seen == set(TRIVIALAUGMENT_OPS)  # every op was exercised


def test_trivialaugment_op_space_is_the_wide_one():
    assert len(TRIVIALAUGMENT_OPS) == 14
    shear, signed = TRIVIALAUGMENT_OPS["ShearX"]
    assert signed and len(shear) == 31 and float(shear[-1]) == pytest.approx(0.99)
    assert float(TRIVIALAUGMENT_OPS["TranslateX"][0][-1]) == 32.0 and float(TRIVIALAUGMENT_OPS["Rotate"][0][-1]) == 135.0
    assert TRIVIALAUGMENT_OPS["Posterize"][0].tolist()[:: 5] == [8, 7, 6, 5, 4, 3, 2] and not TRIVIALAUGMENT_OPS["Posterize"][1]
    assert TRIVIALAUGMENT_OPS["Identity"] == (None, False) and TRIVIALAUGMENT_OPS["Equalize"] == (None, False)


def test_trivialaugment_is_seeded_and_leaves_its_input_alone():
    x = torch.rand(6, 3, 16, 16)
    copy = x.clone()
    a = trivialaugment()(x, torch.Generator().manual_seed(1))
    assert torch.equal(x, copy) and not torch.equal(a, x)
    assert torch.equal(a, trivialaugment()(x, torch.Generator().manual_seed(1)))


def reference_smm_crop_flip(x: torch.Tensor, generator: torch.Generator, out: int) -> torch.Tensor:
    """Resize to out + 32, then per image: slice the crop and mirror it, drawing in the same order."""
    big = F.interpolate(x, size=(out + 32, out + 32), mode="bilinear", align_corners=False, antialias=True)
    offsets = torch.randint(0, 33, (len(x), 2), generator=generator)
    flips = torch.rand(len(x), generator=generator) < 0.5
    crops = []
    for i in range(len(x)):
        top, left = int(offsets[i, 0]), int(offsets[i, 1])
        crop = big[i, :, top : top + out, left : left + out]
        crops.append(crop.flip(-1) if flips[i] else crop)
    return torch.stack(crops)


def test_smm_recipe_resizes_to_input_plus_32_then_crops_and_flips():
    x = torch.rand(10, 3, 16, 16)
    ours = smm_crop_flip((16, 16), 40)(x, torch.Generator().manual_seed(5))
    assert ours.shape == (10, 3, 40, 40)
    assert torch.equal(ours, reference_smm_crop_flip(x, torch.Generator().manual_seed(5), 40))
    with pytest.raises(ValueError):
        smm_crop_flip((16, 16))


def test_compose_applies_in_order_from_one_stream():
    x = torch.rand(4, 3, 16, 16)
    both = compose(None, trivialaugment(), smm_crop_flip((16, 16), 24))
    g = torch.Generator().manual_seed(3)
    expected = smm_crop_flip((16, 16), 24)(trivialaugment()(x, g), g)
    assert torch.equal(both(x, torch.Generator().manual_seed(3)), expected)
    assert compose(None, None) is None
    assert {"none", "pad_crop_flip", "smm_crop_flip", "resized_crop_flip", "trivialaugment"} <= set(AUGMENTATIONS)
    assert build_augment("none", (16, 16)) is None


def build(cifar_root, tmp_path, prompt: str, augment):
    config = RunConfig(
        method="ilm_vp", network=TINY_NETWORK, dataset="cifar10", epochs=1, batch_size=16, device="cpu",
        prompt=prompt, results_path=str(tmp_path / "res"), extra={"augment": augment},
    )  # fmt: skip
    data = load_dataset("cifar10", cifar_root, batch_size=16, subset=SubsetSpec())
    runtime = setup_runtime("cpu", "fp32")
    return config, data, runtime, build_visual_prompt(config, data, runtime)


@pytest.mark.parametrize(
    "prompt, flag, recipe",
    [
        ("pad", None, "none"), ("watermark", None, "resize_crop"), ("smm", None, "smm_crop_flip"), ("lowrank", None, "none"),
        ("pad", "crop_flip", "pad_crop_flip"), ("lowrank", "crop_flip", "smm_crop_flip"), ("smm", "none", "none"),
        ("pad", "trivialaugment", "trivialaugment+pad_crop_flip"), ("smm", "trivialaugment", "trivialaugment+smm_crop_flip"),
        ("watermark", False, "none"), ("pad", True, "pad_crop_flip"),  # the old on/off values still read
    ],
)  # fmt: skip
def test_each_prompt_keeps_its_papers_recipe_by_default(prompt, flag, recipe, tmp_path, cifar_root):
    *_, experiment = build(cifar_root, tmp_path, prompt, flag)
    assert experiment.info["augment_recipe"] == recipe and (experiment.train_augment is None) == (recipe == "none")


def test_unknown_augment_is_a_user_error(tmp_path, cifar_root):
    with pytest.raises(UserError, match="unknown --augment 'mixup'"):
        build(cifar_root, tmp_path, "pad", "mixup")


@pytest.mark.parametrize("prompt", ["pad", "smm"])
def test_trivialaugment_touches_training_batches_only(prompt, tmp_path, cifar_root):
    config, data, runtime, experiment = build(cifar_root, tmp_path, prompt, "trivialaugment")
    calls = []

    def spy_augment(x, generator):
        calls.append(x.shape[0])
        return augment(x, generator)

    augment = experiment.train_augment
    experiment.train_augment = spy_augment
    run_dir = RunDir(config.run_path())
    run_dir.prepare(resume=False, overwrite=False, eval_only=False)
    trainer = Trainer(config, experiment, data, runtime, run_dir)
    trainer.fit()
    assert sum(calls) == len(data.train)  # each training image once per epoch; no mapping, test or val batch
    first = trainer.evaluate(trainer.test_loader)
    assert trainer.evaluate(trainer.test_loader) == first and sum(calls) == len(data.train)


@pytest.mark.slow
def test_a_resumed_run_replays_trivialaugment_exactly(tmp_path, cifar_root, monkeypatch):
    """SMM with TrivialAugment: the augmentation draws and the mask network's batch-norm statistics resume."""
    args = ["--prompt", "smm", "--augment", "trivialaugment", "--epochs", "3"]
    assert main("ilm_vp", tiny_args(tmp_path / "straight", cifar_root, *args)) == 0
    original = engine.Trainer.train_epoch

    def interrupted(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(engine.Trainer, "train_epoch", interrupted)
    assert main("ilm_vp", tiny_args(tmp_path / "cut", cifar_root, *args)) == 130
    monkeypatch.setattr(engine.Trainer, "train_epoch", original)
    assert main("ilm_vp", tiny_args(tmp_path / "cut", cifar_root, *args, "--resume")) == 0
    straight, resumed = (torch.load(next((tmp_path / d).rglob("ckpt.pth")), weights_only=False) for d in ("straight", "cut"))
    assert straight["model"].keys() == resumed["model"].keys()
    assert all(torch.equal(straight["model"][k], resumed["model"][k]) for k in straight["model"])
    assert [r["train_loss"] for r in straight["history"]] == [r["train_loss"] for r in resumed["history"]]
