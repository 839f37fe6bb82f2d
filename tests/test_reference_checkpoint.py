"""Import of the authors' AttnVGG checkpoints: same function as their wiring, and no pickled code runs."""

from __future__ import annotations

import builtins
import functools
import io
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from attnmel.io import atomic_torch_save, atomic_write_bytes
from attnmel.models import ReferenceCheckpointError, load_reference_checkpoint

# The authors' cut of torchvision's vgg16_bn ``features`` into conv_block1..5 (docs/REFERENCE.md, Model).
_CUTS = ((0, 6), (7, 13), (14, 23), (24, 33), (34, 43))


@functools.cache
def _authors_state_dict(num_classes: int = 2) -> dict[str, torch.Tensor]:
    """Random weights under the authors' 101 key names, shapes taken from torchvision's vgg16_bn."""
    with torch.device("meta"):
        features = torchvision.models.vgg16_bn().features
    generator = torch.Generator().manual_seed(0)

    def rand(*shape: int, scale: float = 1.0, low: float = 0.0) -> torch.Tensor:
        return low + scale * torch.rand(*shape, generator=generator)

    state: dict[str, torch.Tensor] = {}
    for k, (start, end) in enumerate(_CUTS, start=1):
        for j in range(start, end):
            for name, value in features[j].state_dict().items():
                key = f"conv_block{k}.{j - start}.{name}"
                if name == "num_batches_tracked":
                    state[key] = torch.tensor(1234)
                elif value.ndim == 4:  # conv weight, roughly variance preserving
                    fan_in = value.shape[1] * 9
                    state[key] = (
                        torch.randn(value.shape, generator=generator) * (2 / fan_in) ** 0.5
                    ).contiguous()
                elif name == "running_var" or (name == "weight" and j > start):  # BatchNorm scale and var
                    state[key] = rand(*value.shape, low=0.5)
                else:  # conv bias, BatchNorm bias and mean
                    state[key] = rand(*value.shape, scale=0.2, low=-0.1)
    for attn, channels in (("attn1", 256), ("attn2", 512)):
        state[f"{attn}.W_l.weight"] = (
            torch.randn(256, channels, 1, 1, generator=generator) * (2 / channels) ** 0.5
        )
        state[f"{attn}.W_g.weight"] = torch.randn(256, 512, 1, 1, generator=generator) * (2 / 512) ** 0.5
        state[f"{attn}.phi.weight"] = torch.randn(1, 256, 1, 1, generator=generator) * (2 / 256) ** 0.5
        state[f"{attn}.phi.bias"] = rand(1, scale=0.2, low=-0.1)
    state["cls.weight"] = torch.randn(num_classes, 512 + 256 + 512, generator=generator) * 0.1
    state["cls.bias"] = rand(num_classes, scale=0.2, low=-0.1)
    assert len(state) == 101
    return state


def _authors_forward(state: dict[str, torch.Tensor], x: torch.Tensor, normalize: str = "sigmoid"):
    """An independent, functional rendering of the authors' AttnVGG wiring in eval mode."""

    def block(k: int, h: torch.Tensor) -> torch.Tensor:
        indices = sorted({int(key.split(".")[1]) for key in state if key.startswith(f"conv_block{k}.")})
        for i in indices:
            p = f"conv_block{k}.{i}."
            if state[p + "weight"].ndim == 4:
                h = F.conv2d(h, state[p + "weight"], state[p + "bias"], padding=1)
            else:  # BatchNorm, then the ReLU that follows it (no parameters, so no key)
                bn = (
                    state[p + "running_mean"],
                    state[p + "running_var"],
                    state[p + "weight"],
                    state[p + "bias"],
                )
                h = F.relu(F.batch_norm(h, *bn, training=False, eps=1e-5))
        return h

    def attention(prefix: str, local: torch.Tensor, g: torch.Tensor, up: int):
        g_up = F.interpolate(F.conv2d(g, state[prefix + "W_g.weight"]), scale_factor=up, mode="bilinear")
        c = F.conv2d(F.relu(F.conv2d(local, state[prefix + "W_l.weight"]) + g_up), *_phi(prefix))
        n, _, h, w = c.shape
        if normalize == "sigmoid":
            a = torch.sigmoid(c)
            pooled = (a.expand_as(local) * local).view(n, local.shape[1], -1).mean(dim=2)
        else:
            a = F.softmax(c.view(n, 1, -1), dim=2).view(n, 1, h, w)
            pooled = (a.expand_as(local) * local).view(n, local.shape[1], -1).sum(dim=2)
        return a, pooled

    def _phi(prefix: str):
        return state[prefix + "phi.weight"], state[prefix + "phi.bias"]

    h = F.max_pool2d(block(1, x), 2, 2)
    h = F.max_pool2d(block(2, h), 2, 2)
    l1 = F.max_pool2d(block(3, h), 2, 2)
    l2 = F.max_pool2d(block(4, l1), 2, 2)
    g = F.max_pool2d(block(5, l2), 2, 2)
    a1, g1 = attention("attn1.", l1, g, up=4)
    a2, g2 = attention("attn2.", l2, g, up=2)
    logits = F.linear(torch.cat((g.mean(dim=(2, 3)), g1, g2), dim=1), state["cls.weight"], state["cls.bias"])
    return logits, a1, a2


def _opt_state(state: dict[str, torch.Tensor]) -> dict:
    """An SGD state like the released files': numpy scalars in the param group."""
    return {
        "state": {0: {"momentum_buffer": torch.zeros(3)}},
        "param_groups": [
            {
                "lr": np.float64(0.0001),
                "initial_lr": np.float64(0.01),
                "momentum": 0.9,
                "dampening": 0,
                "weight_decay": 0.0001,
                "nesterov": True,
                "params": list(range(len(state))),
            }
        ],
    }


def _save(path, state, *, zip_format: bool = True, numpy1_names: bool = False, prefix: str = ""):
    obj = {"state_dict": {prefix + k: v for k, v in state.items()}, "opt_state_dict": _opt_state(state)}
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=zip_format)
    data = buffer.getvalue()
    if numpy1_names:  # as written by numpy 1.x (2019), whose scalar lived in numpy.core
        assert not zip_format
        data = data.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar")
        assert b"numpy.core.multiarray\nscalar" in data
    return atomic_write_bytes(path, data)


@pytest.mark.parametrize(
    "fmt",
    [
        {"zip_format": True},
        {"zip_format": False, "numpy1_names": True},
        {"zip_format": True, "prefix": "module."},
    ],
    ids=["zip", "legacy-numpy1", "module-prefix"],
)
def test_import_computes_the_authors_function(tmp_path, fmt):
    state = _authors_state_dict()
    path = _save(tmp_path / "best.pth", state, **fmt)
    with pytest.raises(pickle.UnpicklingError):  # the numpy scalars make plain weights_only refuse it
        torch.load(path, weights_only=True)
    model = load_reference_checkpoint(path).eval()
    assert model.arch == "attnmel_cnn" and model.arch_kwargs["num_classes"] == 2
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        logits, a1, a2 = _authors_forward(state, x)
    assert out.attn3.shape == a1.shape == (2, 1, 8, 8) and out.attn4.shape == a2.shape == (2, 1, 4, 4)
    assert torch.allclose(out.attn3, a1, atol=1e-5) and torch.allclose(out.attn4, a2, atol=1e-5)
    assert torch.allclose(out.logits, logits, rtol=1e-4, atol=1e-4)
    assert logits.std() > 1e-3  # a non-degenerate function


def test_import_with_softmax_normalisation(tmp_path):
    state = _authors_state_dict()
    path = _save(tmp_path / "softmax.pth", state)
    model = load_reference_checkpoint(path, normalize="softmax").eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out = model(x)
        logits, a1, a2 = _authors_forward(state, x, normalize="softmax")
    assert torch.allclose(out.attn3, a1, atol=1e-6) and torch.allclose(
        out.logits, logits, rtol=1e-4, atol=1e-4
    )


def test_import_rejects_wrong_contents(tmp_path):
    state = dict(_authors_state_dict())
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        load_reference_checkpoint(tmp_path / "nothere.pth")
    missing = {k: v for k, v in state.items() if k != "attn2.phi.bias"}
    with pytest.raises(ReferenceCheckpointError, match="attn2.phi.bias"):
        load_reference_checkpoint(_save(tmp_path / "missing.pth", missing))
    extra = {**state, "attn3.W_l.weight": torch.zeros(1)}
    with pytest.raises(ReferenceCheckpointError, match="unexpected"):
        load_reference_checkpoint(_save(tmp_path / "extra.pth", extra))
    with pytest.raises(ReferenceCheckpointError, match="cls.weight"):
        load_reference_checkpoint(_save(tmp_path / "ok.pth", state), num_classes=3)
    with pytest.raises(ValueError, match="vgg16_bn"):
        load_reference_checkpoint(tmp_path / "ok.pth", backbone="vgg16")
    atomic_torch_save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ReferenceCheckpointError, match="no state dict"):
        load_reference_checkpoint(tmp_path / "list.pth")


class _Payload:
    """Pickles as a call of ``func(arg)``: what a malicious checkpoint would do."""

    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


def _malicious(kind: str, marker) -> bytes:
    if kind == "eval":
        payload = _Payload(builtins.eval, f"open({str(marker)!r}, 'w').write('pwned')")
    else:
        payload = _Payload(os.system, f"echo pwned > '{marker}'")
    if kind == "raw-pickle":  # no tensors: a plain pickle of a tensor would itself be refused first
        return pickle.dumps({"state_dict": {}, "opt_state_dict": {"state": payload}}, protocol=2)
    obj = {"state_dict": {"cls.bias": torch.zeros(2)}, "opt_state_dict": {"state": payload}}
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def test_malicious_payload_really_runs_when_unpickled_unsafely(tmp_path):
    """Control: the payload used below does act when a careless loader unpickles it."""
    marker = tmp_path / "control"
    pickle.loads(_malicious("raw-pickle", marker))
    assert marker.exists()


@pytest.mark.parametrize(
    ("kind", "refused"), [("system", "system"), ("eval", "eval"), ("raw-pickle", "system")]
)
def test_malicious_pickle_is_refused_without_side_effects(tmp_path, kind, refused):
    marker = tmp_path / "pwned"
    path = atomic_write_bytes(tmp_path / f"evil-{kind}.pth", _malicious(kind, marker))
    with pytest.raises(ReferenceCheckpointError) as info:
        load_reference_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and refused in message and "refused" in message
    assert not marker.exists()
