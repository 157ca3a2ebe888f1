"""data/augment.py, data/trivialaugment.py and --augment: TrivialAugment against torchvision, SMM's crop,
per-prompt recipes, training batches only, and a resumed run that replays the augmentation exactly."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2 as T
from conftest import TINY_NETWORK, same_training, straight_and_resumed, tiny_args

from algorithms.engine import Trainer
from algorithms.methods.visual_prompt import build_visual_prompt
from algorithms.settings import RunConfig
from common.errors import UserError
from data.augment import RESIZE_MARGIN_SMM, compose, resize_crop_recipe
from data.augment_draws import AugmentDraws
from data.registry import SubsetSpec, load_dataset
from data.trivialaugment import TRIVIALAUGMENT_OPS, draw_trivialaugment, trivialaugment
from runner.devices import setup_runtime
from runner.run_dir import RunDir

smm_crop_flip = resize_crop_recipe(RESIZE_MARGIN_SMM, flip=True)


@pytest.mark.slow
def test_trivialaugment_equals_torchvision_trivialaugmentwide_image_by_image():
    """Image ``i`` gets exactly what torchvision's transform gives it from image ``i``'s own stream."""
    x = torch.rand(8, 3, 24, 24)
    augment = trivialaugment()
    seen = set()
    for epoch in range(40):
        draws = AugmentDraws(3, epoch, torch.arange(8))
        ours = augment(x, draws)
        for i, key in enumerate(draws.keys.tolist()):
            torch.manual_seed(key % 2**63)  # the seed of image i's generator
            assert torch.equal(ours[i : i + 1], T.TrivialAugmentWide()(x[i : i + 1])), (epoch, i)
            seen |= {name for name, _ in draw_trivialaugment(1, torch.Generator().manual_seed(key % 2**63))}
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
    a = trivialaugment()(x, AugmentDraws.first(6, seed=1))
    assert torch.equal(x, copy) and not torch.equal(a, x)
    assert torch.equal(a, trivialaugment()(x, AugmentDraws.first(6, seed=1)))


def reference_smm_crop_flip(x: torch.Tensor, draws: AugmentDraws, out: int) -> torch.Tensor:
    """Resize to out + 32, then per image: slice the crop and mirror it, from the same 3 uniforms each."""
    big = F.interpolate(x, size=(out + 32, out + 32), mode="bilinear", align_corners=False, antialias=True)
    u = draws.uniform(3)
    crops = []
    for i in range(len(x)):
        top, left = int(u[i, 0] * 33), int(u[i, 1] * 33)
        crop = big[i, :, top : top + out, left : left + out]
        crops.append(crop.flip(-1) if u[i, 2] < 0.5 else crop)
    return torch.stack(crops)


def test_smm_recipe_resizes_to_input_plus_32_then_crops_and_flips():
    x = torch.rand(10, 3, 16, 16)
    ours = smm_crop_flip((16, 16), 40)(x, AugmentDraws.first(10, seed=5))
    assert ours.shape == (10, 3, 40, 40)
    assert torch.equal(ours, reference_smm_crop_flip(x, AugmentDraws.first(10, seed=5), 40))


def test_compose_applies_in_order_continuing_each_samples_stream():
    x = torch.rand(4, 3, 16, 16)
    both = compose(None, trivialaugment(), smm_crop_flip((16, 16), 24))
    d = AugmentDraws.first(4, seed=3)
    expected = smm_crop_flip((16, 16), 24)(trivialaugment()(x, d), d)
    assert torch.equal(both(x, AugmentDraws.first(4, seed=3)), expected)
    assert compose(None, None) is None


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
        ("pad", None, "none"), ("watermark", None, "resize4_crop"), ("smm", None, "resize32_crop_flip"), ("lowrank", None, "none"),
        ("pad", "crop_flip", "pad_crop_flip"), ("lowrank", "crop_flip", "resize32_crop_flip"), ("smm", "none", "none"),
        ("watermark", "crop_flip", "resize4_crop"),
        ("pad", "trivialaugment", "trivialaugment_wide+pad_crop_flip"), ("smm", "trivialaugment", "trivialaugment_wide+resize32_crop_flip"),
        ("watermark", "trivialaugment", "trivialaugment_wide+resize4_crop"),
        ("watermark", False, "none"), ("pad", True, "pad_crop_flip"),  # the old on/off values still read
        ("watermark", "resize32_crop_flip", "resize32_crop_flip"), ("pad", "trivialaugment_wide", "trivialaugment_wide"),
        ("smm", "smm_crop_flip+trivialaugment", "resize32_crop_flip+trivialaugment_wide"),  # ACAVP's order
    ],
)  # fmt: skip
def test_each_prompt_keeps_its_papers_recipe_by_default(prompt, flag, recipe, tmp_path, cifar_root):
    *_, experiment = build(cifar_root, tmp_path, prompt, flag)
    assert experiment.info["augment"] == recipe and (experiment.train_augment is None) == (recipe == "none")


@pytest.mark.parametrize(
    "prompt, flag, message",
    [("pad", "mixup", "unknown --augment 'mixup'"), ("pad", "pad_crop_flip+mixup", "unknown --augment"),
     ("smm", "none+pad_crop_flip", "none cannot be chained"),
     ("pad", "resize32_crop_flip", "--prompt pad takes the image at its own size")],
)  # fmt: skip
def test_a_bad_augment_is_a_user_error(prompt, flag, message, tmp_path, cifar_root):
    with pytest.raises(UserError, match=message):
        build(cifar_root, tmp_path, prompt, flag)


@pytest.mark.slow
@pytest.mark.parametrize("prompt", ["pad", "smm"])
def test_trivialaugment_touches_training_batches_only(prompt, tmp_path, cifar_root):
    config, data, runtime, experiment = build(cifar_root, tmp_path, prompt, "trivialaugment")
    calls = []

    def spy_augment(x, draws):
        calls.append(x.shape[0])
        return augment(x, draws)

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
    straight, resumed = straight_and_resumed("ilm_vp", lambda res: tiny_args(res, cifar_root, *args), tmp_path, monkeypatch)
    assert same_training(straight, resumed)
