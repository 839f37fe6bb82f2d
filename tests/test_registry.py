"""The model registry: names, the backbone contract, every model x backbone at 64 px, maps, parameter counts."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from attnmel.models import AttnMelOutput, build_model, registry
from attnmel.saliency import CAM, GRADCAM, compute_maps, map_labels

PAIRS = [
    (m, b)
    for m in registry.list_models()
    for b in registry.list_backbones()
    if registry.get_model(m).backbones is None or b in registry.get_model(m).backbones
]
PARAMS_2_CLASSES = {  # VGG rows: docs/REFERENCE.md (Model); the others measured once, to catch silent changes
    ("attnmel_cnn", "vgg16_bn"): 15_184_964,
    ("attnmel_cnn", "vgg16"): 15_176_516,
    ("attnmel_cnn", "resnet50"): 24_957_508,  # 23,508,032 backbone + 459,521 + 721,665 + 268,290
    ("mel_cnn", "vgg16_bn"): 14_725_698,
    ("mel_cnn", "vgg16"): 14_717_250,
    ("mel_cnn", "resnet50"): 23_515_202,
    ("vgg16_gap", "vgg16_bn"): 14_724_162,
    ("vgg16_gap", "vgg16"): 14_715_714,
    ("vgg16_gap", "resnet50"): 23_512_130,
    ("vgg16", "vgg16_bn"): 134_277_186,
    ("vgg16", "vgg16"): 134_268_738,
}
MAPS = {  # the declared intrinsic maps, key -> label
    ("attnmel_cnn", "vgg16_bn"): {"pool3": "pool-3 attention", "pool4": "pool-4 attention"},
    ("attnmel_cnn", "vgg16"): {"pool3": "pool-3 attention", "pool4": "pool-4 attention"},
    ("attnmel_cnn", "resnet50"): {"layer2": "layer2 attention", "layer3": "layer3 attention"},
    ("vgg16_gap", "vgg16_bn"): {"cam": "CAM"},
    ("vgg16_gap", "vgg16"): {"cam": "CAM"},
    ("vgg16_gap", "resnet50"): {"cam": "CAM"},
}


def test_names():
    assert registry.list_models() == ("attnmel_cnn", "mel_cnn", "vgg16_gap", "vgg16")
    assert registry.list_backbones() == ("vgg16_bn", "vgg16", "resnet50")
    assert set(PARAMS_2_CLASSES) == set(PAIRS)


def test_config_takes_its_names_from_the_registry_without_importing_torch():
    code = (
        "import sys; from attnmel.config import MODELS, BACKBONES; from attnmel.models import registry; "
        "assert MODELS == registry.list_models() and BACKBONES == registry.list_backbones(); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("backbone", registry.list_backbones())
def test_backbone_honours_its_contract(backbone):
    spec = registry.get_backbone(backbone)
    module = registry.create_backbone(backbone).eval()
    assert module.feature_info is spec
    with torch.no_grad():
        found = module(torch.randn(1, 3, 64, 96))
    assert tuple(found._fields) == tuple(t.name for t in spec.taps)
    for tap in spec.taps:
        assert getattr(found, tap.name).shape == (1, tap.channels, 64 // tap.reduction, 96 // tap.reduction)
    assert set(module.imagenet_key_map(prefix="features.").values()) == {
        f"features.{k}" for k in module.state_dict()
    }


@pytest.mark.parametrize(("name", "backbone"), PAIRS)
def test_every_model_on_every_backbone_at_64_px(name, backbone):
    torch.manual_seed(0)
    model = build_model(name, backbone=backbone).eval()
    assert sum(p.numel() for p in model.parameters()) == PARAMS_2_CLASSES[(name, backbone)]
    assert model.arch == name and model.arch_kwargs["backbone"] == backbone
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        out = model(x)
        maps = compute_maps(model, x, out)
    assert isinstance(out, AttnMelOutput) and out.logits.shape == (1, 2) and torch.isfinite(out.logits).all()
    assert model.saliency_maps == MAPS.get((name, backbone), {})
    assert set(maps) == set(model.saliency_maps)
    spec = registry.get_backbone(backbone)
    if "attention" in registry.get_model(name).maps:
        for tap, attn in zip(spec.local, (out.attn3, out.attn4), strict=True):
            assert attn.shape == (1, 1, 64 // tap.reduction, 64 // tap.reduction)
            assert torch.equal(maps[tap.name], attn)
    else:
        assert out.attn3 is None and out.attn4 is None
    if CAM in maps:
        assert maps[CAM].shape == (1, 1, 2, 2)
    gradcam = compute_maps(model, x, gradcam=True)[GRADCAM]  # at the global tap, any model
    assert gradcam.shape == (1, 1, 2, 2) and (gradcam >= 0).all() and not gradcam.requires_grad
    assert map_labels(model, gradcam=True)[GRADCAM] == f"Grad-CAM ({spec.global_tap.label})"


def test_resnet50_trains_at_batch_two_and_rebuilds_from_arch():
    model = build_model("attnmel_cnn", backbone="resnet50", normalize="softmax").train()
    out = model(torch.randn(2, 3, 64, 64))
    (out.logits.sum() + out.attn3.mean()).backward()
    assert model.attn3.W_f.weight.grad.abs().sum() > 0
    assert model.attn3.W_f.in_channels == 512 and model.attn4.W_f.in_channels == 1024
    assert model.attn3.W_g.in_channels == model.attn4.W_g.in_channels == 2048
    assert model.classifier.in_features == 2048 + 512 + 1024
    rebuilt = build_model(model.arch, **model.arch_kwargs)
    rebuilt.load_state_dict(model.state_dict())  # same keys and shapes


def test_refusals_are_one_line_value_errors():
    with pytest.raises(ValueError, match=r"^model 'vgg16' does not take backbone 'resnet50'; it takes"):
        build_model("vgg16", backbone="resnet50")
    with pytest.raises(ValueError, match=r"^backbone must be one of \('vgg16_bn', 'vgg16', 'resnet50'\)"):
        build_model("attnmel_cnn", backbone="resnet18")
    with pytest.raises(ValueError, match=r"^unknown model 'vgg19'; choose one of"):
        build_model("vgg19")
    with pytest.raises(ValueError, match="already registered"):
        registry.register_model(registry.get_model("mel_cnn"))
