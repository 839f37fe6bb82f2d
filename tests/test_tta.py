"""Test-time augmentation: the 8 dihedral views, and evaluate / predict / the CLI averaging them exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from attnmel.tta import DIHEDRAL, dihedral_views, tta_probabilities

from .helpers import tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _by_hand(x: np.ndarray) -> list[np.ndarray]:
    """The 8 views of an (N, C, H, W) array with numpy: rotations by 90 degrees, then the same after a flip."""
    views = [np.rot90(x, k, axes=(-2, -1)) for k in range(4)]
    flipped = x[..., ::-1]
    return views + [np.rot90(flipped, k, axes=(-2, -1)) for k in range(4)]


def test_the_eight_views_are_the_dihedral_group() -> None:
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)  # no symmetry at all
    views = dihedral_views(x)
    assert len(views) == len(DIHEDRAL) == 8
    assert torch.equal(views[0], x)
    assert len({v.numpy().tobytes() for v in views}) == 8  # all different
    for got, want in zip(views, _by_hand(x.numpy()), strict=True):
        np.testing.assert_array_equal(got.numpy(), want)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from attnmel.data import make_synthetic
    from attnmel.trainer import fit

    root = tmp_path_factory.mktemp("data") / "syn"
    make_synthetic(root, n=40, size=48, seed=0)
    config = tiny_config(
        root,
        tmp_path_factory.mktemp("runs"),
        epochs=2,
        max_train_samples=12,
        n_boot=0,
        run_name="run",
        seed=1,
        lr=0.001,  # small steps: probabilities away from 0 and 1, where the views disagree
    )
    return config, fit(config, log=lambda _msg: None).run_dir


def test_evaluate_with_tta_is_the_mean_of_the_transformed_predictions(trained, tmp_path, capsys) -> None:
    from attnmel.checkpoint import build_model_from_checkpoint
    from attnmel.evaluate import evaluate_checkpoint, split_loader
    from attnmel.metrics import read_predictions_csv

    config, run = trained
    best = run / "checkpoints" / "best.pt"
    kwargs = dict(split="Test_v2", device="cpu", precision="fp32", n_boot=0, plots=False, batch_size=8)
    plain = evaluate_checkpoint(best, out_dir=tmp_path / "plain", **kwargs)
    tta = evaluate_checkpoint(best, out_dir=tmp_path / "tta", tta=True, **kwargs)
    assert plain["tta"] is False and tta["tta"] is True
    ids, prob = read_predictions_csv(tmp_path / "tta" / "predictions" / "Test_v2.csv")
    _, prob_plain = read_predictions_csv(tmp_path / "plain" / "predictions" / "Test_v2.csv")

    model, _ = build_model_from_checkpoint(best)
    expected, seen = [], []
    with torch.inference_mode():
        for batch in split_loader(config, "Test_v2", batch_size=8):
            views = _by_hand(batch["image"].numpy())
            probs = [torch.softmax(model(torch.from_numpy(v.copy())).logits, 1)[:, 1] for v in views]
            expected.append(torch.stack(probs).double().mean(0))
            seen += list(batch["image_id"])
    assert ids == seen
    np.testing.assert_allclose(prob, torch.cat(expected).numpy(), rtol=0, atol=1e-6)
    assert not np.allclose(prob, prob_plain)  # the views do change the model's answer
    with capsys.disabled():
        print(
            f"\nTTA on Test_v2 (n={tta['n']}): AUC {plain['auc']:.4f} -> {tta['auc']:.4f}, AP {plain['ap']:.4f} -> {tta['ap']:.4f}"
        )


def test_tta_probabilities_reuses_given_logits() -> None:
    class Counting(torch.nn.Module):
        calls = 0

        def forward(self, x):
            Counting.calls += 1
            z = x.mean(dim=(1, 2)) @ torch.ones(x.shape[-1], 2)  # (N, 2), orientation-dependent
            return type("Out", (), {"logits": z})()

    x = torch.rand(3, 3, 5, 5)
    model = Counting()
    full = tta_probabilities(model, x)
    assert Counting.calls == 8
    again = tta_probabilities(model, x, model(x).logits)
    assert Counting.calls == 8 + 1 + 7
    torch.testing.assert_close(full, again)


def test_predict_and_the_cli_take_tta(trained, tmp_path, capsys) -> None:
    from attnmel.checkpoint import build_model_from_checkpoint
    from attnmel.cli import main
    from attnmel.predict import predict_images

    config, run = trained
    best = run / "checkpoints" / "best.pt"
    image = next((Path(config.data_root) / "ISIC-2017_Test_v2_Data").glob("*.jpg"))
    plain = predict_images(best, [image], tmp_path / "p", device="cpu", overlays=False)[0]
    tta = predict_images(best, [image], tmp_path / "t", device="cpu", overlays=False, tta=True)[0]
    assert plain.probability != pytest.approx(tta.probability, abs=1e-9)

    model, _ = build_model_from_checkpoint(best)
    x = _tensor_of(config, image)
    with torch.inference_mode():
        want = np.mean(
            [
                float(torch.softmax(model(torch.from_numpy(v.copy())).logits, 1)[0, 1])
                for v in _by_hand(x.numpy())
            ]
        )
    assert tta.probability == pytest.approx(want, abs=1e-6)

    assert (
        main(
            [
                "predict",
                str(image),
                "--checkpoint",
                str(best),
                "--out-dir",
                str(tmp_path / "c"),
                "--device",
                "cpu",
                "--no-overlays",
                "--tta",
            ]
        )
        == 0
    )
    assert f"{tta.probability:.4f}" in capsys.readouterr().out
    code = main(
        [
            "evaluate",
            str(best),
            "--split",
            "Test_v2",
            "--out-dir",
            str(tmp_path / "e"),
            "--device",
            "cpu",
            "--n-boot",
            "0",
            "--no-plots",
            "--tta",
        ]
    )
    assert code == 0
    assert json.loads((tmp_path / "e" / "metrics" / "Test_v2.json").read_text())["tta"] is True


def _tensor_of(config, image: Path) -> torch.Tensor:
    from torchvision import tv_tensors

    from attnmel.data import eval_transform
    from attnmel.loaders import normalisation
    from attnmel.predict import load_image_rgb

    mean, std = normalisation(config.dataset)
    transform = eval_transform(size=config.image_size, resize=config.resize, mean=mean, std=std)
    rgb = load_image_rgb(image)
    x = transform(tv_tensors.Image(torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()))
    return x.as_subclass(torch.Tensor)[None]
