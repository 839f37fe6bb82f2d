"""The from-scratch recipe's options: each defaults to the paper's protocol, and each does what it says."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from attnmel.config import TrainConfig
from attnmel.losses import AttnMelLoss, focal_loss
from attnmel.models.networks import AttnMelOutput
from attnmel.trainer import build_scheduler, fit, lr_factor, mix_batch

from .helpers import tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"crop_scale": 0.0}, "crop_scale = 0.0 must lie in"),
        ({"color_jitter": 1.0}, "color_jitter = 1.0 must lie in"),
        ({"color_constancy": 0.5}, "color_constancy = 0.5 must be 0"),
        ({"label_smoothing": 0.5}, "label_smoothing = 0.5 must lie in"),
        ({"mixup": -1.0}, "mixup = -1.0 must be >= 0"),
        ({"mixup": 0.2, "roi": "lesion"}, "no ROI mask fits"),
        ({"warmup_epochs": 5, "epochs": 5}, "warmup_epochs = 5 must be >= 0 and below epochs"),
        ({"ema": 1.0}, "ema = 1.0 must lie in"),
        ({"lr_schedule": "linear"}, "lr_schedule"),
        ({"select_epoch": "best"}, "select_epoch = 'best' is not allowed"),
    ],
)
def test_recipe_options_refuse_bad_values_naming_them(changes, message) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)


def test_the_defaults_are_the_papers_protocol() -> None:
    config = TrainConfig()
    assert (config.crop_scale, config.color_jitter, config.label_smoothing, config.mixup) == (
        1.0,
        0.0,
        0.0,
        0.0,
    )
    assert (config.lr_schedule, config.warmup_epochs, config.ema) == ("step", 0, 0.0)
    assert config.select_epoch == "val_auc"  # the authors kept the best validation AUC
    assert config.color_constancy == 0.0  # the authors' images keep their colours
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    assert isinstance(build_scheduler(optimizer, config), torch.optim.lr_scheduler.StepLR)


def test_soft_targets_give_the_hard_focal_loss_for_one_hot_rows_and_smoothing_follows_its_formula() -> None:
    torch.manual_seed(0)
    logits, target = torch.randn(6, 2), torch.tensor([0, 1, 1, 0, 1, 0])
    one_hot = torch.nn.functional.one_hot(target, 2).float()
    for alpha in (None, 0.25):
        assert focal_loss(logits, one_hot, 2.0, alpha) == pytest.approx(
            focal_loss(logits, target, 2.0, alpha).item()
        )
    eps = 0.1
    out = AttnMelOutput(logits, None, None)
    smoothed = AttnMelLoss(label_smoothing=eps)(out, target).focal
    p = logits.softmax(1)
    q = one_hot * (1 - eps) + eps / 2
    expected = -(q * (1 - p) ** 2 * p.log()).sum(1).mean()
    assert smoothed.item() == pytest.approx(expected.item(), rel=1e-5)
    assert smoothed.item() != pytest.approx(AttnMelLoss()(out, target).focal.item())


def test_lr_factor_warms_up_then_steps_or_follows_a_cosine() -> None:
    step = [lr_factor(e, schedule="step", warmup=0, epochs=6, step=2, gamma=0.1) for e in range(6)]
    assert step == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    cosine = [lr_factor(e, schedule="cosine", warmup=2, epochs=6, step=2, gamma=0.1) for e in range(6)]
    assert cosine[:2] == pytest.approx([1 / 3, 2 / 3])
    assert cosine[2] == pytest.approx(1.0) and cosine[-1] > 0
    assert cosine[2:] == sorted(cosine[2:], reverse=True)
    assert cosine[3] == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_the_scheduler_applies_the_factor_once_per_epoch() -> None:
    config = TrainConfig(epochs=4, lr=0.1, lr_schedule="cosine", warmup_epochs=1)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    scheduler = build_scheduler(optimizer, config)
    seen = []
    for _ in range(4):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.05, 0.1, 0.1 * 0.5 * (1 + math.cos(math.pi / 3)), 0.1 * 0.25])


def test_mix_batch_blends_images_and_labels_alike_and_repeats_under_a_seed() -> None:
    images = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 3, 2, 2).contiguous()
    labels = torch.tensor([0, 1, 0, 1])
    torch.manual_seed(3)
    mixed, target = mix_batch(images, labels, 0.4)
    torch.manual_seed(3)
    again, _ = mix_batch(images, labels, 0.4)
    assert torch.equal(mixed, again)
    assert torch.allclose(target.sum(1), torch.ones(4))
    torch.manual_seed(3)  # the same draws, made by hand: lam ~ Beta(0.4, 0.4), then a permutation
    lam = float(torch.distributions.Beta(0.4, 0.4).sample())
    perm = torch.randperm(4)
    one_hot = torch.nn.functional.one_hot(labels, 2).float()
    assert torch.allclose(mixed, lam * images + (1 - lam) * images[perm])
    assert torch.allclose(target, lam * one_hot + (1 - lam) * one_hot[perm])
    assert 0 < lam < 1 and not torch.equal(perm, torch.arange(4))


def test_scale_jitter_and_colour_jitter_move_masks_with_images_and_leave_them_binary() -> None:
    from torchvision import tv_tensors

    from attnmel.data.transforms import train_transform

    image = torch.zeros(3, 60, 60, dtype=torch.uint8)
    image[:, 20:40, 20:40] = 200  # a bright square lesion on black
    mask = torch.zeros(1, 60, 60, dtype=torch.uint8)
    mask[:, 20:40, 20:40] = 1
    transform = train_transform(32, 48, mean=(0, 0, 0), std=(1, 1, 1), crop_scale=0.3, color_jitter=0.0)
    assert any(type(t).__name__ == "RandomResizedCrop" for t in transform.transforms)
    torch.manual_seed(0)
    for _ in range(10):
        out = transform({"image": tv_tensors.Image(image), "mask": tv_tensors.Mask(mask)})
        assert out["image"].shape == (3, 32, 32) and out["mask"].shape == (1, 32, 32)
        inside = out["mask"][0] > 0
        assert set(out["mask"].unique().tolist()) <= {0, 1}
        if inside.any() and (~inside).any():  # the mask marks the bright pixels, wherever the crop fell
            assert out["image"][0][inside].mean() > 0.5 > out["image"][0][~inside].mean()
    jitter = train_transform(32, 48, mean=(0, 0, 0), std=(1, 1, 1), color_jitter=0.4)
    torch.manual_seed(1)
    outs = [jitter({"image": tv_tensors.Image(image), "mask": tv_tensors.Mask(mask)}) for _ in range(6)]
    assert len({round(float(o["image"].max()), 4) for o in outs}) > 1  # brightness varies between draws
    assert all(set(o["mask"].unique().tolist()) <= {0, 1} for o in outs)


@pytest.fixture(scope="module")
def syn(tiny_synthetic):
    return tiny_synthetic


def _stopped_in_epoch_then_resumed(config, stop_epoch, monkeypatch, log=lambda _m: None, before_resume=None):
    """Train ``config``, interrupt it as epoch ``stop_epoch`` begins, then resume it: the resumed run's result.
    ``before_resume(run_dir)`` may change the folder in between (e.g. as older code would have left it)."""
    from attnmel import trainer

    real_epoch = trainer._train_epoch

    def stop(run, epoch, show):
        if epoch == stop_epoch:
            raise KeyboardInterrupt
        return real_epoch(run, epoch, show)

    monkeypatch.setattr(trainer, "_train_epoch", stop)
    with pytest.raises(KeyboardInterrupt):
        fit(config, log=lambda _m: None)
    monkeypatch.setattr(trainer, "_train_epoch", real_epoch)
    if before_resume is not None:
        before_resume(Path(config.runs_root) / config.run_name)
    return fit(config.replace(resume=True), log=log)


def _script_val_aucs(monkeypatch, aucs: list[float]) -> None:
    """The trainer's validation AUCs from here on are ``aucs``, in order (AP 0.5)."""
    from attnmel import trainer

    scripted = iter(aucs)
    monkeypatch.setattr(trainer, "_auc_ap", lambda labels, probs: (next(scripted), 0.5))


def test_a_recipe_run_trains_validates_the_average_and_resumes_exactly(syn, tmp_path, monkeypatch) -> None:
    """Every option on at once; killed after epoch 1, resumed: the same weights and average as a straight run."""
    recipe = dict(crop_scale=0.5, color_jitter=0.2, label_smoothing=0.1, mixup=0.2, lr_schedule="cosine",
                  warmup_epochs=1, ema=0.9)  # fmt: skip
    base = tiny_config(syn, tmp_path / "runs", epochs=3, max_train_samples=12, seed=5, eval_splits="Validation",
                       n_boot=0, **recipe)  # fmt: skip
    quiet = {"log": lambda _msg: None}
    straight = fit(base.replace(run_name="straight"), **quiet)
    assert [round(r["lr"], 6) for r in straight.history] == [0.005, 0.01, 0.005]  # warm-up, then the cosine

    resumed = _stopped_in_epoch_then_resumed(base.replace(run_name="split"), 2, monkeypatch)

    a = torch.load(straight.run_dir / "checkpoints" / "latest.pt", weights_only=True)
    b = torch.load(resumed.run_dir / "checkpoints" / "latest.pt", weights_only=True)
    for part in ("model", "train_model"):  # the average (what was validated) and the SGD weights
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert a["ema_updates"] == b["ema_updates"] == 3 * math.ceil(12 / 4)
    assert any(
        not torch.equal(a["model"][k], a["train_model"][k]) for k in a["model"]
    )  # an average, not a copy
    best = torch.load(straight.run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert "train_model" not in best and "ema_updates" not in best
    assert [r["val_auc"] for r in straight.history] == [r["val_auc"] for r in resumed.history]

    with pytest.raises(ValueError, match="the cosine schedule spans them"):
        fit(base.replace(run_name="split", resume=True, epochs=4), **quiet)


def test_select_epoch_last_keeps_the_last_epoch_whatever_its_validation_auc(syn, tmp_path) -> None:
    quiet = {"log": lambda _m: None}
    base = tiny_config(syn, tmp_path, epochs=3, max_train_samples=12, eval_splits="Validation", n_boot=0)
    by_auc = fit(base.replace(run_name="auc"), **quiet)
    last = fit(base.replace(run_name="last", select_epoch="last"), **quiet)
    aucs = [r["val_auc"] for r in last.history]
    assert aucs == [r["val_auc"] for r in by_auc.history]  # the choice does not change the training
    assert by_auc.best_epoch == 1 + aucs.index(max(aucs))  # the paper's rule: the first best validation AUC
    assert last.best_epoch == 3 and last.best_val_auc == aucs[-1]
    best = torch.load(last.run_dir / "checkpoints" / "best.pt", weights_only=True)
    latest = torch.load(last.run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert best["epoch"] == 3 and all(
        torch.equal(best["model"][k], latest["model"][k]) for k in best["model"]
    )
    metrics = json.loads((last.run_dir / "metrics" / "Validation.json").read_text())
    assert metrics["epoch"] == 3 and metrics["auc"] == pytest.approx(aucs[-1])


SCRIPTED_VAL_AUCS = [0.6, 0.8, 0.7, 0.8]  # the peak is epoch 2: epoch 4 only ties it


def test_select_epoch_last_keeps_the_best_validation_epoch_in_best_val_pt_across_a_resume(
    syn, tmp_path, monkeypatch
) -> None:
    """best.pt holds the last epoch, best_val.pt the first best validation AUC; a resume finds that epoch again
    from the history (else epoch 3's 0.7 would replace epoch 2's 0.8 after the restart)."""
    base = tiny_config(syn, tmp_path, epochs=4, max_train_samples=8, eval_splits="Validation", n_boot=0)
    lines: list[str] = []
    _script_val_aucs(monkeypatch, SCRIPTED_VAL_AUCS)
    by_auc = fit(base.replace(run_name="auc"), log=lambda _m: None)
    assert by_auc.best_epoch == 2 and not (by_auc.run_dir / "checkpoints" / "best_val.pt").exists()

    _script_val_aucs(monkeypatch, SCRIPTED_VAL_AUCS)
    last = _stopped_in_epoch_then_resumed(
        base.replace(run_name="last", select_epoch="last"), 3, monkeypatch, lines.append
    )

    folder = last.run_dir / "checkpoints"
    best, peak = (torch.load(folder / name, weights_only=True) for name in ("best.pt", "best_val.pt"))
    assert (best["epoch"], best["best_epoch"], best["best_val_auc"]) == (4, 4, 0.8)
    assert (peak["epoch"], peak["best_epoch"], peak["best_val_auc"]) == (2, 2, 0.8)
    assert "optimizer" not in peak and "rng" not in peak  # weights and facts only, like best.pt
    chosen = torch.load(by_auc.run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert all(torch.equal(peak["model"][k], chosen["model"][k]) for k in chosen["model"])
    assert not all(torch.equal(peak["model"][k], best["model"][k]) for k in best["model"])
    assert (
        "kept the last epoch (4, val AUC 0.8000), best val AUC 0.8000 at epoch 2 (best_val.pt)" in lines[-1]
    )


def test_best_val_runs_read_a_last_epoch_run_back_at_its_best_validation_epoch(
    syn, tmp_path, monkeypatch
) -> None:
    """The contrast that trains nothing: a run that kept its last epoch, read back at its best validation epoch
    (best_val.pt), predicts the test images as the same training does when it keeps that epoch itself; its
    evaluation is written once, in the run's best-val/ folder, and reused; a run without best_val.pt is refused."""
    from attnmel import experiments

    # bf16 in NHWC order, as the scratch presets run on a CPU: the two memory orders round differently in bf16
    base = tiny_config(syn, tmp_path, epochs=4, max_train_samples=8, eval_splits="Validation,Test_v2", n_boot=0,
                       precision="bf16", channels_last=True)  # fmt: skip
    _script_val_aucs(monkeypatch, SCRIPTED_VAL_AUCS)  # the peak is epoch 2
    by_auc = experiments.load_run(fit(base.replace(run_name="auc"), log=lambda _m: None).run_dir)
    _script_val_aucs(monkeypatch, SCRIPTED_VAL_AUCS)
    last = experiments.load_run(
        fit(base.replace(run_name="last", select_epoch="last"), log=lambda _m: None).run_dir
    )
    monkeypatch.undo()

    logged: list[str] = []
    peak = experiments.best_val_runs({3: last}, log=logged.append)[3]
    assert peak.run_dir == last.run_dir / "best-val" and peak.best_checkpoint.name == "best_val.pt"
    assert list(peak.metrics) == ["Test_v2", "Validation"]
    assert [m["epoch"] for m in peak.metrics.values()] == [2, 2]
    assert (peak.best_epoch, last.best_epoch) == (2, 4)
    assert last.metrics["Test_v2"]["epoch"] == 4 and by_auc.metrics["Test_v2"]["epoch"] == 2
    # what training writes when it keeps that epoch, to the last digit
    for split in ("Test_v2", "Validation"):
        assert peak.predictions(split)[0] == by_auc.predictions(split)[0]
        assert peak.predictions(split)[2].tolist() == by_auc.predictions(split)[2].tolist()
    assert peak.metrics["Test_v2"]["auc"] == by_auc.metrics["Test_v2"]["auc"]
    assert len(logged) == 2

    again = experiments.best_val_runs({3: last}, log=logged.append)[3]
    assert len(logged) == 2 and again.metrics == peak.metrics  # reused, not evaluated again
    with pytest.raises(FileNotFoundError, match=r"auc/checkpoints/best_val.pt is missing: only a run with"):
        experiments.best_val_runs({0: by_auc})


def test_a_resumed_run_without_best_val_pt_says_its_peak_was_not_kept(syn, tmp_path, monkeypatch) -> None:
    """A run begun before best_val.pt existed finds its peak in the history, and its last line says the peak's
    weights were not kept instead of naming a file that is not there."""
    base = tiny_config(syn, tmp_path, epochs=4, max_train_samples=8, eval_splits="Validation", n_boot=0)
    lines: list[str] = []

    def as_older_code_left_it(run_dir: Path) -> None:
        (run_dir / "checkpoints" / "best_val.pt").unlink()

    _script_val_aucs(monkeypatch, SCRIPTED_VAL_AUCS)
    last = _stopped_in_epoch_then_resumed(base.replace(run_name="last", select_epoch="last"), 3, monkeypatch,
                                          lines.append, as_older_code_left_it)  # fmt: skip
    assert not (last.run_dir / "checkpoints" / "best_val.pt").exists()  # epoch 4 only ties the peak
    assert (
        "best val AUC 0.8000 at epoch 2 (not saved: the run began before best_val.pt was kept)" in lines[-1]
    )
