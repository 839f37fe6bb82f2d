"""ImageNet weights from a temporary torch hub cache, from a local file, and the offline error."""

from __future__ import annotations

import functools
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision
from torchvision.models import ResNet50_Weights, VGG16_BN_Weights, VGG16_Weights

from attnmel.io import atomic_torch_save
from attnmel.models import (
    WeightsError,
    WeightsNotFoundError,
    attnmel_cnn,
    fetch_imagenet_weights,
    imagenet_checkpoint_path,
    mel_cnn,
    vgg16,
    vgg16_gap,
)

FILENAMES = {"vgg16_bn": "vgg16_bn-6c64b313.pth", "vgg16": "vgg16-397923af.pth"}


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty TORCH_HOME, and any attempt to download fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_download(*args, **kwargs):
        raise AssertionError("attnmel must not download weights implicitly")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    return tmp_path / "torch"


@functools.cache
def _torchvision_state_dict(
    backbone: str, prefixes: tuple[str, ...] = ("features.",)
) -> dict[str, torch.Tensor]:
    """Random tensors under torchvision's own key layout and shapes (taken from a meta-device model).

    Dense (2-D) weights are one random column broadcast over the row, stored as such by torch.save: distinct
    values per row at a tiny file size (fc6 alone would be 400 MB).
    """
    with torch.device("meta"):
        reference = getattr(torchvision.models, backbone)()
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, value in reference.state_dict().items():
        if not key.startswith(prefixes):
            continue
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif value.ndim == 2:
            state[key] = (torch.rand(value.shape[0], 1, generator=generator) + 0.5).expand(value.shape)
        else:
            state[key] = torch.rand(value.shape, generator=generator) + 0.5
    return state


def _check_backbone(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    ours = model.state_dict()
    key_map = model.imagenet_key_map()
    for key, value in state.items():
        if key in key_map:
            assert torch.equal(ours[key_map[key]], value), key
    assert all(k in state for k in key_map if not k.endswith("num_batches_tracked"))


@pytest.mark.parametrize(
    ("builder", "backbone", "weights"),
    [
        (attnmel_cnn, "vgg16_bn", "IMAGENET1K_V1"),
        (mel_cnn, "vgg16_bn", "DEFAULT"),
        (vgg16_gap, "vgg16_bn", VGG16_BN_Weights.IMAGENET1K_V1),
        (attnmel_cnn, "vgg16", VGG16_Weights.DEFAULT),
        (vgg16_gap, "vgg16", "VGG16_Weights.IMAGENET1K_V1"),
    ],
)
def test_imagenet_weights_from_hub_cache(torch_home, builder, backbone, weights):
    state = _torchvision_state_dict(backbone)
    path = torch_home / "hub" / "checkpoints" / FILENAMES[backbone]
    atomic_torch_save(state, path)
    torch.manual_seed(0)
    model = builder(backbone=backbone, weights=weights)
    _check_backbone(model, state)
    bn = [m for m in model.features.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(int(m.num_batches_tracked) == 7 for m in bn)
    # the head stays freshly initialised (N(0, 0.01), bias 0)
    head = model.classifier
    assert head.weight.std().item() == pytest.approx(0.01, rel=0.2) and torch.equal(head.bias, torch.zeros(2))


def test_cache_path_is_hub_dir_checkpoints(torch_home):
    assert imagenet_checkpoint_path(VGG16_BN_Weights.IMAGENET1K_V1) == (
        torch_home / "hub" / "checkpoints" / "vgg16_bn-6c64b313.pth"
    )
    assert imagenet_checkpoint_path(VGG16_Weights.IMAGENET1K_V1).name == FILENAMES["vgg16"]


def test_old_files_without_num_batches_tracked_load(torch_home):
    state = {
        k: v for k, v in _torchvision_state_dict("vgg16_bn").items() if not k.endswith("num_batches_tracked")
    }
    atomic_torch_save(state, torch_home / "hub" / "checkpoints" / FILENAMES["vgg16_bn"])
    model = vgg16_gap(weights="IMAGENET1K_V1")
    _check_backbone(model, state)


def test_local_file_with_wrapper_and_module_prefix(tmp_path, torch_home):
    state = _torchvision_state_dict("vgg16")
    wrapped = {"state_dict": {f"module.{k}": v for k, v in state.items()}}
    path = atomic_torch_save(wrapped, tmp_path / "my weights.pth")
    model = mel_cnn(backbone="vgg16", weights=path)
    _check_backbone(model, state)
    _check_backbone(mel_cnn(backbone="vgg16", weights=str(path)), state)


def test_missing_cache_file_is_a_clear_error(torch_home):
    with pytest.raises(WeightsNotFoundError) as info:
        attnmel_cnn(weights="IMAGENET1K_V1")
    message = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert str(torch_home / "hub" / "checkpoints") in message
    assert "vgg16_bn-6c64b313.pth" in message
    assert VGG16_BN_Weights.IMAGENET1K_V1.url in message
    assert "weights=None" in message


def test_wrong_weights_arguments(torch_home, tmp_path):
    with pytest.raises(ValueError, match="VGG16_Weights"):
        mel_cnn(backbone="vgg16", weights=VGG16_BN_Weights.IMAGENET1K_V1)
    with pytest.raises(WeightsNotFoundError, match="neither"):
        mel_cnn(weights="imagenet")
    with pytest.raises(TypeError, match="weights"):
        mel_cnn(weights=3)  # type: ignore[arg-type]
    bad = atomic_torch_save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match="partial.pth"):
        mel_cnn(weights=bad)
    state = _torchvision_state_dict("vgg16")  # vgg16 layout into a vgg16_bn model: shapes do not fit
    wrong = atomic_torch_save(state, tmp_path / "plain.pth")
    with pytest.raises(WeightsError, match="plain.pth"):
        mel_cnn(backbone="vgg16_bn", weights=wrong)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="garbage.pth"):
        mel_cnn(weights=garbage)


def test_fetch_wraps_network_errors(torch_home, monkeypatch):
    def offline(url, dst, progress=True):
        raise URLError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsNotFoundError, match="could not download") as info:
        fetch_imagenet_weights("vgg16_bn", progress=False)
    assert "vgg16_bn-6c64b313.pth" in str(info.value) and "weights=None" in str(info.value)


def test_fetch_downloads_into_hub_cache(torch_home, monkeypatch):
    state = _torchvision_state_dict("vgg16")
    calls = []

    def fake_download(url, dst, progress=True):
        calls.append(url)
        atomic_torch_save(state, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    path = fetch_imagenet_weights("vgg16", progress=False)
    assert calls == [VGG16_Weights.IMAGENET1K_V1.url]
    assert path == torch_home / "hub" / "checkpoints" / FILENAMES["vgg16"]
    _check_backbone(vgg16_gap(backbone="vgg16", weights="DEFAULT"), state)
    assert fetch_imagenet_weights("vgg16", progress=False) == path and len(calls) == 1  # cached


def test_dense_vgg16_takes_fc6_fc7_but_not_the_output_layer(torch_home):
    state = _torchvision_state_dict("vgg16_bn", prefixes=("features.", "classifier."))
    atomic_torch_save(state, torch_home / "hub" / "checkpoints" / FILENAMES["vgg16_bn"])
    torch.manual_seed(0)
    model = vgg16(weights="IMAGENET1K_V1")
    _check_backbone(model, state)
    ours = model.state_dict()
    assert torch.equal(ours["classifier.0.weight"], state["classifier.0.weight"])
    assert torch.equal(ours["classifier.3.bias"], state["classifier.3.bias"])
    assert ours["classifier.6.weight"].shape == (2, 4096)
    assert torch.equal(ours["classifier.6.bias"], torch.zeros(2))


@pytest.mark.parametrize(
    ("builder", "weights"),
    [
        (attnmel_cnn, "IMAGENET1K_V1"),
        (mel_cnn, ResNet50_Weights.IMAGENET1K_V2),
        (vgg16_gap, "DEFAULT"),  # ResNet50_Weights.DEFAULT is IMAGENET1K_V2
    ],
)
def test_resnet50_weights_from_hub_cache(torch_home, builder, weights):
    """ResNet-50: torchvision's own key names under ``features.``, fc left out, through the same hub cache."""
    state = _torchvision_state_dict("resnet50", prefixes=("conv1.", "bn1.", "layer"))
    enum = ResNet50_Weights[weights] if isinstance(weights, str) else weights
    atomic_torch_save(state, imagenet_checkpoint_path(enum))
    torch.manual_seed(0)
    model = builder(backbone="resnet50", weights=weights)
    _check_backbone(model, state)
    assert set(model.imagenet_key_map()) == set(state)  # every backbone key, nothing of fc
    head = model.classifier
    assert head.weight.std().item() == pytest.approx(0.01, rel=0.2) and torch.equal(head.bias, torch.zeros(2))


def test_resnet50_missing_weights_and_wrong_family(torch_home):
    with pytest.raises(WeightsNotFoundError) as info:
        attnmel_cnn(backbone="resnet50", weights="IMAGENET1K_V2")
    assert imagenet_checkpoint_path(ResNet50_Weights.IMAGENET1K_V2).name in str(info.value)
    with pytest.raises(ValueError, match="ResNet50_Weights"):
        mel_cnn(backbone="resnet50", weights=VGG16_BN_Weights.IMAGENET1K_V1)
    vgg_state = atomic_torch_save(_torchvision_state_dict("vgg16_bn"), torch_home / "vgg.pth")
    with pytest.raises(WeightsError, match="backbone keys"):
        mel_cnn(backbone="resnet50", weights=vgg_state)
