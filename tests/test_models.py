"""The four builders: shapes at batch 1 and small inputs, parameter counts, layout, init, rebuild from .arch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision

from attnmel.io import atomic_torch_save
from attnmel.models import (
    VGG16GAP,
    AttnMelCNN,
    AttnMelOutput,
    VGG16Classifier,
    attnmel_cnn,
    build_model,
    mel_cnn,
    vgg16,
    vgg16_gap,
)
from attnmel.saliency import binarise, class_activation_map, minmax_normalise, upsample_map

BUILDERS = {"attnmel_cnn": attnmel_cnn, "mel_cnn": mel_cnn, "vgg16_gap": vgg16_gap, "vgg16": vgg16}
PARAMS_2_CLASSES = {  # docs/REFERENCE.md (Model), measured on the authors' code
    "attnmel_cnn": 15_184_964,
    "mel_cnn": 14_725_698,
    "vgg16_gap": 14_724_162,
    "vgg16": 134_277_186,
}
_CACHE: dict[str, torch.nn.Module] = {}


@pytest.fixture(autouse=True, scope="module")
def _free_models():
    """Drop the cached models (about 0.7 GB) when this module's tests are done."""
    yield
    _CACHE.clear()


def _model(name: str) -> torch.nn.Module:
    """One instance per builder for the whole module (the dense VGG-16 alone has 134 M parameters)."""
    if name not in _CACHE:
        torch.manual_seed(0)
        _CACHE[name] = BUILDERS[name]()
    return _CACHE[name]


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", BUILDERS)
def test_parameter_counts_match_reference(name):
    assert _count(_model(name)) == PARAMS_2_CLASSES[name]


def test_parameter_count_breakdown_of_attnmel():
    model = _model("attnmel_cnn")
    assert _count(model.features) == 14_723_136
    assert _count(model.attn3) == 196_865
    assert _count(model.attn4) == 262_401
    assert _count(model.classifier) == 2_562


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("name", BUILDERS)
def test_batch_one_small_inputs(name, size, mode):
    model = _model(name).train(mode == "train")
    torch.manual_seed(1)
    with torch.no_grad():
        out = model(torch.randn(1, 3, size, size))
    assert isinstance(out, AttnMelOutput)
    assert out.logits.shape == (1, 2)
    assert torch.isfinite(out.logits).all()
    if name == "attnmel_cnn":
        assert out.attn3.shape == (1, 1, size // 8, size // 8)
        assert out.attn4.shape == (1, 1, size // 16, size // 16)
        for attn in (out.attn3, out.attn4):
            assert torch.isfinite(attn).all() and (attn >= 0).all() and (attn <= 1).all()
    else:
        assert out.attn3 is None and out.attn4 is None


def test_non_multiple_of_32_and_rectangular_inputs():
    model = _model("attnmel_cnn").eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 50, 72))
    assert out.logits.shape == (2, 2)
    assert out.attn3.shape == (2, 1, 6, 9)  # floor(50/8), floor(72/8)
    assert out.attn4.shape == (2, 1, 3, 4)


def test_paper_resolution_shapes():
    model = _model("attnmel_cnn").eval()
    with torch.no_grad():
        pool3, pool4, pool5 = model.features(torch.randn(1, 3, 224, 224))
        attn3, attn4 = model.attn3(pool3, pool5)[1], model.attn4(pool4, pool5)[1]
    assert (
        pool3.shape == (1, 256, 28, 28) and pool4.shape == (1, 512, 14, 14) and pool5.shape == (1, 512, 7, 7)
    )
    assert attn3.shape == (1, 1, 28, 28) and attn4.shape == (1, 1, 14, 14)


def test_backward_at_batch_one_in_train_mode():
    model = _model("attnmel_cnn").train()
    model.zero_grad()
    out = model(torch.randn(1, 3, 32, 32))
    (out.logits.sum() + out.attn3.mean() + out.attn4.mean()).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.attn3.W_f.weight.grad.abs().sum() > 0
    model.zero_grad()


def test_mel_cnn_head_is_plain_average_pooling():
    model = _model("mel_cnn").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        pool3, pool4, pool5 = model.features(x)
        expected = model.classifier(
            torch.cat([pool5.mean((2, 3)), pool3.mean((2, 3)), pool4.mean((2, 3))], 1)
        )
        assert torch.allclose(model(x).logits, expected, atol=1e-5)
    assert not hasattr(model, "attn3")


def test_vgg16_gap_features_map_and_classifier():
    model = _model("vgg16_gap").eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        fmap = model.features_map(x)
        assert fmap.shape == (2, 512, 2, 3)
        assert isinstance(model.classifier, torch.nn.Linear) and model.classifier.in_features == 512
        assert torch.allclose(model(x).logits, model.classifier(fmap.mean((2, 3))), atol=1e-5)


def test_model_classes_and_arch_attributes():
    assert isinstance(_model("attnmel_cnn"), AttnMelCNN) and isinstance(_model("mel_cnn"), AttnMelCNN)
    assert isinstance(_model("vgg16_gap"), VGG16GAP) and isinstance(_model("vgg16"), VGG16Classifier)
    model = attnmel_cnn(backbone="vgg16", num_classes=3, normalize="softmax")
    assert model.arch == "attnmel_cnn"
    assert model.arch_kwargs == {"backbone": "vgg16", "num_classes": 3, "normalize": "softmax"}
    assert mel_cnn().arch_kwargs == {"backbone": "vgg16_bn", "num_classes": 2}


@pytest.mark.parametrize("name", ["attnmel_cnn", "mel_cnn", "vgg16_gap"])
def test_checkpoint_rebuilds_model_and_loads_weights_only(name, tmp_path):
    model = build_model(name, backbone="vgg16", num_classes=3).eval()
    path = atomic_torch_save(
        {"model": model.state_dict(), "arch": model.arch, "arch_kwargs": model.arch_kwargs}, tmp_path / "m.pt"
    )
    ckpt = torch.load(path, weights_only=True)
    rebuilt = build_model(ckpt["arch"], **ckpt["arch_kwargs"]).eval()
    rebuilt.load_state_dict(ckpt["model"])
    assert type(rebuilt) is type(model)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x).logits, model(x).logits)


def test_plain_vgg16_backbone_has_no_batchnorm():
    model = vgg16_gap(backbone="vgg16")
    assert _count(model.features) == 14_714_688  # torchvision vgg16().features
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert _count(attnmel_cnn(backbone="vgg16")) == 14_714_688 + 196_865 + 262_401 + 2_562


@pytest.mark.parametrize(
    ("backbone", "pools"), [("vgg16_bn", (6, 13, 23, 33, 43)), ("vgg16", (4, 9, 16, 23, 30))]
)
def test_blocks_are_cut_at_torchvision_max_pools(backbone, pools):
    """Each conv_block<k> holds torchvision's features between two max-pools, indices restarting at 0."""
    with torch.device("meta"):
        tv = getattr(torchvision.models, backbone)()
    assert [i for i, m in enumerate(tv.features) if isinstance(m, torch.nn.MaxPool2d)] == list(pools)
    ours = vgg16_gap(backbone=backbone).features
    starts = (0,) + tuple(p + 1 for p in pools[:-1])
    for k, (start, end) in enumerate(zip(starts, pools, strict=True), start=1):
        block = getattr(ours, f"conv_block{k}")
        assert len(block) == end - start
        for i, layer in enumerate(block):
            theirs = tv.features[start + i]
            assert type(layer) is type(theirs)
            assert {n: p.shape for n, p in layer.state_dict().items()} == {
                n: p.shape for n, p in theirs.state_dict().items()
            }


def test_initialisation_follows_reference():
    torch.manual_seed(0)
    model = attnmel_cnn()
    for conv in (model.attn3.W_f, model.attn4.W_f, model.attn4.W_g):  # Kaiming normal, fan_in, ReLU
        fan_in = conv.weight.shape[1]
        assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.05)
    assert torch.equal(model.attn3.W.bias, torch.zeros(1))
    assert model.classifier.weight.std().item() == pytest.approx(0.01, rel=0.1)
    assert torch.equal(model.classifier.bias, torch.zeros(2))
    conv = model.features.conv_block5[0]  # torchvision's VGG init: Kaiming normal, fan_out
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.05)
    assert torch.equal(conv.bias, torch.zeros(512))
    bn = model.features.conv_block5[1]
    assert torch.equal(bn.weight, torch.ones(512)) and torch.equal(bn.bias, torch.zeros(512))


def test_builders_are_keyword_only_and_validate_arguments():
    with pytest.raises(TypeError):
        attnmel_cnn("vgg16_bn")  # type: ignore[misc]
    with pytest.raises(ValueError, match="backbone must be one of .* got 'resnet18'"):
        mel_cnn(backbone="resnet18")
    with pytest.raises(ValueError, match="model 'vgg16' does not take backbone 'resnet50'"):
        vgg16(backbone="resnet50")
    with pytest.raises(ValueError, match="num_classes"):
        vgg16_gap(num_classes=1)
    with pytest.raises(ValueError, match="normalize"):
        attnmel_cnn(normalize="tanh")
    with pytest.raises(ValueError, match="unknown model 'vgg19'"):
        build_model("vgg19")


def test_too_small_or_malformed_input_is_a_clear_error():
    model = _model("vgg16_gap")
    with pytest.raises(ValueError, match=">= 32 px"):
        model(torch.randn(1, 3, 16, 64))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(torch.randn(1, 1, 64, 64))


def test_dense_vgg16_pools_pool5_to_7x7():
    model = _model("vgg16").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        pool5 = model.features(x).pool5  # (1, 512, 2, 2)
        flat = F.adaptive_avg_pool2d(pool5, 7).flatten(1)
        assert torch.allclose(model(x).logits, model.classifier(flat), atol=1e-5)


# --- saliency: upsampling, normalisation and CAM of VGG-16-GAP ---------------------------------------------


def test_upsample_map_is_bilinear_without_aligned_corners():
    saliency = torch.tensor([[0.0, 1.0], [2.0, 3.0]]).view(1, 1, 2, 2)
    up = upsample_map(saliency, 4)
    assert up.shape == (1, 1, 4, 4)
    assert torch.allclose(up[0, 0, 0], torch.tensor([0.0, 0.25, 0.75, 1.0]))
    assert torch.allclose(up[0, 0, :, 0], torch.tensor([0.0, 0.5, 1.5, 2.0]))
    assert upsample_map(saliency, (6, 8)).shape == (1, 1, 6, 8)
    with pytest.raises(ValueError, match=r"\(N, 1, h, w\)"):
        upsample_map(torch.zeros(1, 2, 2, 2), 4)


def test_minmax_normalise_per_image():
    maps = torch.stack([torch.tensor([[1.0, 3.0], [5.0, 9.0]]), torch.full((2, 2), 4.0)])[:, None]
    normalised = minmax_normalise(maps)
    assert torch.allclose(normalised[0, 0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    assert torch.equal(normalised[1], torch.zeros(1, 2, 2))  # a constant map has no salient region
    assert torch.equal(binarise(normalised[:1]), torch.tensor([[[[False, False], [True, True]]]]))


def test_class_activation_map_of_vgg16_gap():
    model = _model("vgg16_gap").eval()
    torch.manual_seed(4)
    x = torch.randn(2, 3, 32, 64)
    with torch.no_grad():
        fmap = model.features_map(x)  # (2, 512, 1, 2)
        logits = model.classifier(fmap.mean((2, 3)))
        cam1 = class_activation_map(model, x)
        cam0 = class_activation_map(model, x, class_index=0)
        up0 = class_activation_map(model, x, class_index=0, upsample=True)
    assert cam1.shape == (2, 1, 1, 2) and up0.shape == (2, 1, 32, 64)
    weights = model.classifier.weight
    assert torch.allclose(cam1[:, 0], (fmap * weights[1][None, :, None, None]).sum(1), atol=1e-5)
    assert torch.allclose(up0, upsample_map(cam0, (32, 64)))
    # GAP is linear: the mean of a class's CAM plus its bias is that class's logit
    for c, cam in ((0, cam0), (1, cam1)):
        assert torch.allclose(cam.mean((1, 2, 3)) + model.classifier.bias[c], logits[:, c], atol=1e-4)
    with pytest.raises(ValueError, match="class_index"):
        class_activation_map(model, x, class_index=2)
