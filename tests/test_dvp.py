"""DVP (algorithms/methods/dvp.py, models/clip/dvp.py): the reweighting matrix by hand, the groupings,
the estimate-only first epoch, exact resume, errors and --help, on a tiny random CLIP and tiny data."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from clip_helpers import private_cache, register_tiny_clip, run_dir_of  # noqa: F401  (private_cache: a fixture)
from conftest import SHARED, same_training, straight_and_resumed, write_image_folder
from torch import nn

from algorithms.engine import Trainer
from algorithms.methods.dvp import CLUSTERS, PRMEstimation, build_prompts
from algorithms.settings import RunConfig
from common.files import load_checkpoint
from common.preemption import EXIT_STOPPED
from common.seeding import init_generator
from models.clip.attributes import draw_attributes, stem_file
from models.clip.dvp import DecoupledVisualPrompting, cluster_descriptions, count_top_k, initial_reweighting, own_class_top_k, reweighting_matrix
from models.clip.prompts import build_clip_prompt
from models.prompts.base import PromptSizeOptions
from runner.cli import main
from runner.config import build_parser

pytestmark = pytest.mark.usefixtures("private_cache")

CLASSES = ["banded_stripes", "dotted", "plain"]
SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "clip" / "dvp.py"

# ---------------------------------------------------------------------------------------------
# The reweighting matrix (PRM) by hand


def test_the_initial_prm_is_one_over_n_on_each_class_s_own_descriptions():
    third = 1 / 3
    expected = torch.tensor([[third, 0], [third, 0], [third, 0], [0, third], [0, third], [0, third]])
    assert torch.allclose(initial_reweighting(2, 3), expected)
    scores = torch.tensor([[3.0, 6.0, 0.0, 1.0, 1.0, 4.0]])
    assert torch.allclose(scores @ initial_reweighting(2, 3), torch.tensor([[3.0, 2.0]]))  # each class: the mean of its own


# 2 classes, n = 3 descriptions each (0-2 class 0, 3-5 class 1), k = 2
HAND_SCORES = torch.tensor([
    [0.9, 0.1, 0.5, 5.0, 5.0, 5.0],  # class 0: own 0.9 0.1 0.5 -> d0, d2 (class 1's high scores never count for it)
    [0.3, 0.3, 0.7, 9.0, 9.0, 9.0],  # class 0: own 0.3 0.3 0.7 -> d2, then the tie 0.3/0.3 -> d0 (the lower index)
    [9.0, 9.0, 9.0, 0.4, 0.6, 0.2],  # class 1: own 0.4 0.6 0.2 -> d4, d3
])  # fmt: skip
HAND_LABELS = torch.tensor([0, 0, 1])


def test_top_k_counts_and_the_re_estimated_prm_against_a_hand_computation():
    assert own_class_top_k(HAND_SCORES, HAND_LABELS, 3, 2).tolist() == [[0, 2], [2, 0], [4, 3]]
    counts = torch.zeros(6)
    count_top_k(counts, HAND_SCORES, HAND_LABELS, 3, 2)
    assert counts.tolist() == [2, 0, 2, 1, 1, 0]  # d0: s1, s2; d2: s1, s2; d3, d4: s3
    prm = reweighting_matrix(counts, 3)
    expected = torch.tensor([[0.5, 0], [0, 0], [0.5, 0], [0, 0.5], [0, 0.5], [0, 0]])
    assert torch.equal(prm, expected)  # each column sums to 1, nothing off its own block
    # k = 3 counts every own description once per sample: class 0 gets 2, 2, 2 -> 1/3 each
    all_three = torch.zeros(6)
    count_top_k(all_three, HAND_SCORES, HAND_LABELS, 3, 3)
    assert all_three.tolist() == [2, 2, 2, 1, 1, 1] and torch.allclose(reweighting_matrix(all_three, 3), initial_reweighting(2, 3))
    # the logits of sample 1 through the estimated PRM: class 0 0.5 * 0.9 + 0.5 * 0.5, class 1 0.5 * 5 + 0.5 * 5
    assert torch.allclose(HAND_SCORES[:1] @ prm, torch.tensor([[0.7, 5.0]]))


def test_a_class_without_samples_keeps_its_previous_weights():
    previous = reweighting_matrix(torch.tensor([1.0, 3.0, 0.0, 2.0, 2.0, 4.0]), 3)
    counts = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0, 1.0])  # no sample of class 0 this epoch
    prm = reweighting_matrix(counts, 3, previous)
    assert torch.allclose(prm[:, 0], torch.tensor([0.25, 0.75, 0, 0, 0, 0])) and torch.allclose(prm[:, 1], torch.tensor([0, 0, 0, 0.5, 0, 0.5]))
    assert torch.allclose(reweighting_matrix(torch.zeros(6), 3), initial_reweighting(2, 3))  # with no previous: 1/n


def test_the_hook_counts_chunk_by_chunk_and_sums_to_the_whole_batch():
    """Two chunks give the counts of one batch (so --micro-batch changes nothing), set after the epoch."""
    from types import SimpleNamespace

    from algorithms.engine import StepOutput
    from algorithms.runtime import Runtime

    model = toy_model([0, 0, 0, 0, 0, 0], num_classes=2, num_prompts=1)
    ctx = SimpleNamespace(model=model, runtime=Runtime(torch.device("cpu"), "fp32"))
    hook = PRMEstimation(top_k=2)
    hook.start_training(ctx, 0)
    assert hook.estimate_only
    for rows in (slice(0, 2), slice(2, 3)):
        hook.on_chunk(StepOutput(torch.zeros(()), torch.zeros(1, 2), HAND_SCORES[rows]), HAND_LABELS[rows])
    assert hook.state_dict()["prm_counts"].tolist() == [2, 0, 2, 1, 1, 0]  # mid-epoch: in a stop's checkpoint
    hook.end_training(ctx, 0)
    assert torch.equal(model.prm, reweighting_matrix(torch.tensor([2.0, 0, 2, 1, 1, 0]), 3)) and hook.state_dict() == {}
    hook.start_training(ctx, 1)
    assert not hook.estimate_only


# ---------------------------------------------------------------------------------------------
# The groupings: which prompt scores which description


def toy_model(groups: list[int], num_classes: int, num_prompts: int, side: int = 4, frame: int = 2, dim: int = 5) -> DecoupledVisualPrompting:
    """P frames around a ``side`` image, a frozen linear "encoder", random descriptions in the given groups."""
    torch.manual_seed(0)
    size = side + 2 * frame
    prompts = [build_clip_prompt("resize_padding", size, PromptSizeOptions(frame), "randn", generator=init_generator(0, f"p{i}")) for i in range(num_prompts)]
    visual = nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, dim)).requires_grad_(False)
    texts = torch.randn(len(groups), dim)
    return DecoupledVisualPrompting(nn.Identity(), prompts, visual, torch.tensor(2.0).log(), texts, torch.tensor(groups), num_classes, channels_last=False)


def by_hand(model: DecoupledVisualPrompting, x: torch.Tensor) -> torch.Tensor:
    """scale * norm(f(prompt_g(x))) . t_j for every description j, prompt by prompt."""
    scorer = model.network
    features = [nn.functional.normalize(scorer.visual(prompt(x)), dim=-1) for prompt in model.prompts]
    return torch.stack([2.0 * features[int(g)] @ scorer.descriptions[j] for j, g in enumerate(scorer.groups)], dim=1)


def test_cause_grouping_scores_are_b_c_mp_and_prompt_i_sees_only_cause_i():
    m, num_prompts, num_classes = 2, 3, 2
    groups = [i for _ in range(num_classes) for i in range(num_prompts) for _ in range(m)]  # per class: cause 1 x m, 2 x m, 3 x m
    model = toy_model(groups, num_classes, num_prompts)
    x = torch.rand(4, 3, 4, 4)
    scores = model.grouped_scores(x)
    assert scores.shape == (4, num_classes, m * num_prompts)
    assert torch.allclose(scores.flatten(1), by_hand(model, x), atol=1e-5)
    for i in range(num_prompts):  # cause i's block depends on prompt i only
        block = scores[:, :, i * m : (i + 1) * m].sum()
        grads = torch.autograd.grad(block, [p.pad_up for p in model.prompts], retain_graph=True)
        assert all((g.abs().sum() > 0) == (j == i) for j, g in enumerate(grads))
    logits = model(x)
    assert torch.allclose(logits, scores.mean(-1), atol=1e-5)  # through the initial PRM: each class's mean


def test_the_cluster_split_is_reproducible_and_numbered_by_first_member():
    torch.manual_seed(1)
    a, b = torch.randn(8) * 10, torch.randn(8) * 10
    noise = 0.01 * torch.randn(6, 8)
    points = torch.stack([b, b, a, b, a, a]) + noise  # two tight, far apart clusters
    groups = cluster_descriptions(points, 2)
    assert groups.tolist() == [0, 0, 1, 0, 1, 1]  # description 0 is in group 0, whatever k-means numbered it
    assert torch.equal(cluster_descriptions(points, 2), groups) and torch.equal(cluster_descriptions(points.clone(), 2), groups)
    assert cluster_descriptions(points, 1).tolist() == [0] * 6
    with pytest.raises(ValueError, match="into 7 clusters"):
        cluster_descriptions(points, 7)


def test_cluster_grouping_scores_each_description_by_its_group_s_prompt():
    groups = [0, 1, 1, 0, 1, 0]  # 2 classes x m = 3 descriptions, 2 clusters
    model = toy_model(groups, num_classes=2, num_prompts=2)
    x = torch.rand(3, 3, 4, 4)
    scores = model.grouped_scores(x)
    assert scores.shape == (3, 2, 3) and torch.allclose(scores.flatten(1), by_hand(model, x), atol=1e-5)
    flat = model.description_scores(x)
    for g, prompt in enumerate(model.prompts):
        grads = [torch.autograd.grad(flat[:, j].sum(), prompt.pad_up, retain_graph=True)[0] for j in range(6)]
        assert [bool(t.abs().sum() > 0) for t in grads] == [group == g for group in groups]


def test_the_prm_is_in_the_checkpointed_state_and_the_descriptions_are_not():
    model = toy_model([0, 0, 0, 1, 1, 1], num_classes=2, num_prompts=2)
    state = model.trainable_state()
    assert "label_mapping.weight" in state and not any("descriptions" in k or "groups" in k for k in state)
    assert {k for k in state if k.startswith("input_transform.prompts.")} == {f"input_transform.prompts.{i}.pad_{s}" for i in (0, 1) for s in ("up", "down", "left", "right")}


# ---------------------------------------------------------------------------------------------
# End to end on a tiny random CLIP


def write_json(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


def tiny_task(tmp_path: Path) -> tuple[Path, Path]:
    """An image folder of 3 classes (4 train, 2 test each) and a folder of its description files."""
    data = write_image_folder(tmp_path / "data", CLASSES, {"train": 4, "test": 2}, size=40)
    folder = tmp_path / "descriptions"
    for suffix in ("cse_1", "cse_2", "cse_3", "des"):
        write_json(stem_file(folder, "folder", suffix), {name: [f"the {suffix} of {name} in sentence {i}" for i in range(5)] + ["."] for name in CLASSES})
    return data, folder


def dvp_args(results: Path, data: Path, folder: Path | None, *extra: str) -> list[str]:
    described = ["--descriptions", str(folder)] if folder is not None else []
    return [
        "--network", register_tiny_clip(), "--clip-pretrained", "none", "--dataset", "folder", "--data-path", str(data),
        "--results-path", str(results), "--epochs", "2", "--batch-size", "4", "--shots", "2", "--device", "cpu",
        "--prompt-size", "4", "--descriptions-per-class", "4", *described, *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("grouping, prompts, n", [("cause", 3, 12), ("cluster", 3, 4)])
def test_dvp_end_to_end(tmp_path, grouping, prompts, n):
    data, folder = tiny_task(tmp_path)
    results = tmp_path / "res"
    assert main("dvp", dvp_args(results, data, folder, "--grouping", grouping)) == 0
    run = run_dir_of(results, "dvp")
    out = json.loads((run / "results.json").read_text())
    config = json.loads((run / "config.json").read_text())["config"]
    assert (out["num_prompts"], out["descriptions_per_class"], out["grouping"]) == (prompts, n, grouping)
    assert sum(out["descriptions_per_prompt"]) == 3 * n and out["data_sizes"]["train"] == 6
    assert out["trainable_params"] == prompts * 3 * (2 * 4 * 32 + 2 * 24 * 4)  # P frames of 4 px around 24 px in the 32-px tiny CLIP
    assert (config["lr"], config["optimizer"], config["scheduler"], config["prompt"], config["batch_size"]) == (40.0, "sgd", "cosine", "resize_padding", 4)
    assert config["extra"]["clusters"] == (3 if grouping == "cluster" else None)
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["prm_estimate_only"] for r in history] == [True, False]
    mapping = json.loads((run / "mappings" / "epoch_002.json").read_text())
    assert set(mapping) == {"banded stripes", "dotted", "plain"}  # per class its 5 heaviest descriptions (all 4 of cluster's)
    assert all(len(v) == min(5, n) and sum(v.values()) <= 1 + 1e-3 for v in mapping.values())
    assert all(abs(sum(v.values()) - 1) < 1e-3 for v in mapping.values()) or n > 5
    # --eval-only draws, encodes and groups the same descriptions again and reads the PRM from best.pth
    assert main("dvp", dvp_args(results, data, folder, "--grouping", grouping, "--eval-only")) == 0
    assert json.loads((run / "eval.json").read_text())["test_acc"] == out["best_test_acc"]


def test_epoch_0_only_estimates_the_prm_and_moves_no_prompt(tmp_path):
    data, folder = tiny_task(tmp_path)
    extra = ("--epochs", "1", "--prompt-init", "randn", "--weight-decay", "0.1")  # weight decay would move a prompt that took a step
    assert main("dvp", dvp_args(tmp_path / "res", data, folder, *extra)) == 0
    saved = load_checkpoint(next((tmp_path / "res").rglob("ckpt.pth")))
    seed = json.loads(next((tmp_path / "res").rglob("config.json")).read_text())["config"]["seed"]
    config = RunConfig(method="dvp", prompt="resize_padding", prompt_init="randn", seed=seed, extra={"prompt_size": 4})
    clip = type("TinyCLIP", (), {"image_size": 32, "mean": (0.5,) * 3, "std": (0.5,) * 3})
    for i, prompt in enumerate(build_prompts(config, clip, 3)):
        for name, value in prompt.state_dict().items():
            assert torch.equal(saved["model"][f"input_transform.prompts.{i}.{name}"], value), name
    assert saved["optimizer"]["state"] == {}  # no step taken: no momentum either
    prm = saved["model"]["label_mapping.weight"]
    assert not torch.equal(prm, initial_reweighting(3, 12)) and torch.allclose(prm.sum(0), torch.ones(3))
    # one more epoch trains
    assert main("dvp", dvp_args(tmp_path / "res2", data, folder, "--epochs", "2", "--prompt-init", "randn")) == 0
    moved = load_checkpoint(next((tmp_path / "res2").rglob("ckpt.pth")))
    # a prompt whose descriptions all got PRM weight 0 rightly gets no gradient; the PRM's columns sum to 1, so some prompt has weight
    frames = [k for k in saved["model"] if k.startswith("input_transform.prompts.")]
    assert any(not torch.equal(moved["model"][k], saved["model"][k]) for k in frames)


def test_dvp_resume_between_epochs_is_exact(tmp_path, monkeypatch):
    data, folder = tiny_task(tmp_path)
    args = lambda results: dvp_args(results, data, folder, "--epochs", "3")  # noqa: E731
    straight, resumed = straight_and_resumed("dvp", args, tmp_path, monkeypatch, stop_epoch=2)
    assert same_training(straight, resumed) and len(resumed["history"]) == 3
    assert torch.equal(straight["model"]["label_mapping.weight"], resumed["model"]["label_mapping.weight"])


@pytest.mark.parametrize("stop_after", [1, 3])  # inside the estimate-only epoch 0; inside epoch 1 (2 steps an epoch)
def test_dvp_stopped_inside_an_epoch_resumes_exactly(tmp_path, monkeypatch, stop_after):
    data, folder = tiny_task(tmp_path)
    args = lambda results: dvp_args(results, data, folder, "--epochs", "3", "--grouping", "cluster")  # noqa: E731
    assert main("dvp", args(tmp_path / "straight")) == 0
    polls = {"n": 0}

    def stop_once(self):
        polls["n"] += 1
        return "TERM" if polls["n"] == stop_after else None

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_stop_signal", stop_once)
        assert main("dvp", args(tmp_path / "cut")) == EXIT_STOPPED
    cut = load_checkpoint(next((tmp_path / "cut").rglob("ckpt.pth")))
    assert cut["epoch_progress"]["steps_done"] == 1 and "prm_counts" in cut
    assert main("dvp", [*args(tmp_path / "cut"), "--resume"]) == 0
    straight, resumed = (load_checkpoint(next((tmp_path / d).rglob("ckpt.pth"))) for d in ("straight", "cut"))
    assert same_training(straight, resumed) and torch.equal(straight["model"]["label_mapping.weight"], resumed["model"]["label_mapping.weight"])


# ---------------------------------------------------------------------------------------------
# Errors and --help


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_bad_descriptions_and_flags_are_one_error_line(tmp_path, capsys):
    data, folder = tiny_task(tmp_path)
    results = tmp_path / "res"
    assert main("dvp", dvp_args(results, data, None)) == 2
    assert "pass --descriptions DIR" in _one_error(capsys)
    stem_file(folder, "folder", "cse_2").unlink()
    assert main("dvp", dvp_args(results, data, folder)) == 2
    line = _one_error(capsys)
    assert f"description file not found: {folder / 'folder_cse_2.json'} (--grouping cause reads folder_cse_1..3.json from --descriptions {folder})" in line
    assert "write them yourself" in line and "DecoupledVP" in line
    write_json(stem_file(folder, "folder", "cse_2"), {"plain": ["a plain sentence that is long enough"]})
    assert main("dvp", dvp_args(results, data, folder)) == 2
    line = _one_error(capsys)
    assert "cause 2 attribute file" in line and "has no entry for 2 of 3 classes: 'banded stripes', 'dotted'" in line
    for extra, message in [
        (("--prm-top-k", "13"), "--prm-top-k 13 must be at most the 12 descriptions per class"),
        (("--grouping", "cluster", "--prm-top-k", "5"), "--prm-top-k 5 must be at most the 4 descriptions per class"),
        (("--clusters", "2"), "--clusters applies to --grouping cluster"),
        (("--grouping", "cluster", "--clusters", "13"), "--clusters 13 exceeds the 12 descriptions (3 classes x 4)"),
        (("--mapping", "ilm"), "--mapping ilm does not apply to DVP"),
        (("--prompt", "random_patch"), "--prompt random_patch is not available to DVP"),
        (("--prompt", "acavp"), "--prompt acavp is not available to DVP"),
        (("--grouping", "clusters"), "argument --grouping: invalid choice: 'clusters'"),
    ]:
        assert main("dvp", dvp_args(results, data, folder, *extra)) == 2
        assert message in _one_error(capsys), extra
    assert not results.exists() or not any(results.rglob("config.json"))


@pytest.mark.parametrize("grouping, dataset, expected", [
    ("cause", "cifar10", "{dir}/cifar10_cse_1.json (--grouping cause reads cifar10_cse_1..3.json from --descriptions {dir}); DVP's code"),
    ("cluster", "oxfordpets", "{dir}/oxford_pets_des.json (--grouping cluster reads oxford_pets_des.json from --descriptions {dir}); oxford_pets's files come with AttrVR's code"),
])  # fmt: skip
def test_the_script_names_a_missing_description_file_where_it_looked_and_where_to_get_it(tmp_path, grouping, dataset, expected):
    """Checked before any data or weights load (the default ViT-B/16 is only a name here); exit status 2."""
    argv = [sys.executable, str(SCRIPT), "--dataset", dataset, "--grouping", grouping, "--descriptions", str(tmp_path), "--results-path", str(tmp_path / "res")]
    out = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: description file not found: "), out.stderr
    assert expected.format(dir=tmp_path) in lines[0]


def test_help_lists_the_groupings_with_their_default():
    text = build_parser("dvp").format_help()
    assert "--grouping {cause,cluster}" in text and "(default: cause)" in text.split("--grouping", 2)[2].split("--descriptions")[0]
    assert "cause: one prompt per cause file" in text and "cluster: k-means groups" in text
    assert "--clusters K" in text and "dtd 3 eurosat 1" in " ".join(text.split())
    assert "(default: ViT-B/16)" in text and "(default: 200)" in text


def test_help_lists_only_the_prompts_dvp_takes_and_their_flags():
    """The prompts DVP refuses are not offered, nor their flags (ACAVP's --warp-pivot); the ones it takes keep theirs."""
    from algorithms.methods.dvp import UNAVAILABLE_PROMPTS

    text = build_parser("dvp").format_help()
    prompt_help = text.split("  --prompt NAME", 1)[1].split("  --prompt-init", 1)[0]
    assert "resize_padding:" in prompt_help and "lowrank:" in prompt_help
    assert not any(f"  {name}:" in prompt_help for name in UNAVAILABLE_PROMPTS)
    assert "--warp-pivot" not in text and "--rank R" in text and "--prompt-size PX" in text
    assert "--warp-pivot" in build_parser("ilm_tp_vp").format_help()  # the CLIP scripts that take ACAVP still offer it
    assert "--input-size" not in build_parser("ilm_tp_vp").format_help()  # pad's flag: pad is a CNN prompt (CLIP's "pad" is padding)


# ---------------------------------------------------------------------------------------------
# The released description files (../shared/attributes), read where VP_SHARED is set: gpt3/ from AttrVR's code
# (MIT licence, copyright 2024 Chengyi Cai), dvp-causes/ from DVP's (MIT licence, copyright 2025 Chengyi Cai);
# their LICENSE.AttrVR and LICENSE.DVP lie beside them. Read in place, never copied.


def shared_descriptions() -> Path:
    if not SHARED:
        pytest.skip("VP_SHARED is not set (description files in ../shared/attributes)")
    folder = Path(SHARED) / "attributes"
    if not (folder / "dvp-causes").is_dir() or not (folder / "gpt3").is_dir():
        pytest.skip(f"no description folders dvp-causes/ and gpt3/ in {folder}")
    return folder


def test_the_released_cause_files_name_every_class_of_each_dataset_with_20_sentences():
    folder = shared_descriptions()
    for stem in CLUSTERS:
        classes = list(json.loads((folder / "gpt3" / f"{stem}_des.json").read_text()))
        for i in (1, 2, 3):
            drawn = draw_attributes(folder / "dvp-causes" / f"{stem}_cse_{i}.json", classes, 20, init_generator(0, f"dvp/cause_{i}"), f"cause {i}")
            assert len(drawn) == len(classes) and all(len(d) == 20 and all(len(s) >= 20 for s in d) for d in drawn), (stem, i)


def test_dvp_runs_on_real_textures_with_the_released_cause_files(tmp_path):
    """DTD-10's classes are DTD's: the dtd files are linked (not copied) under the folder dataset's stem."""
    folder = shared_descriptions()
    dtd10 = Path(SHARED) / "datasets" / "dtd10"
    if not dtd10.is_dir():
        pytest.skip(f"no {dtd10}")
    linked = tmp_path / "descriptions"
    linked.mkdir()
    for i in (1, 2, 3):
        (linked / f"folder_cse_{i}.json").symlink_to(folder / "dvp-causes" / f"dtd_cse_{i}.json")
    results = tmp_path / "res"
    assert main("dvp", dvp_args(results, dtd10, linked, "--epochs", "1", "--max-test-samples", "20")) == 0
    out = json.loads((run_dir_of(results, "dvp") / "results.json").read_text())
    assert out["data_sizes"]["train"] == 20 and out["descriptions_per_class"] == 12 and out["num_prompts"] == 3
