"""Metrics against hand-computed values on tiny arrays, bootstrap behaviour, prediction CSVs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from attnmel.metrics import (
    UndefinedMetricWarning,
    binary_metrics,
    bootstrap_ci,
    bootstrap_distribution,
    calibration,
    paired_bootstrap,
    pr_curve_points,
    read_predictions_csv,
    roc_curve_points,
    summarise,
    write_predictions_csv,
)

ISIC2017 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "isic2017"

# y:    1    1    1    0    0    0    0    1
# p:   .9   .6   .3   .2   .7   .1   .5   .5
# >=.5: 1    1    0    0    1    0    1    1   -> tp=3 (0,1,7), fn=1 (2), fp=2 (4,6), tn=2 (3,5)
Y8 = np.array([1, 1, 1, 0, 0, 0, 0, 1])
P8 = np.array([0.9, 0.6, 0.3, 0.2, 0.7, 0.1, 0.5, 0.5])


def _toy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.25).astype(int)
    p = np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1)
    return y, p


def test_confusion_metrics_by_hand():
    m = binary_metrics(Y8, P8, threshold=0.5)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (3, 1, 2, 2)
    assert m["sensitivity"] == pytest.approx(3 / 4)
    assert m["specificity"] == pytest.approx(2 / 4)
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["accuracy"] == pytest.approx(5 / 8)
    # squared errors: .01 .16 .49 .04 .49 .01 .25 .25 -> 1.70 / 8
    assert m["brier"] == pytest.approx(0.2125)
    assert (m["n"], m["n_pos"]) == (8, 4)


def test_threshold_moves_the_confusion_matrix():
    m = binary_metrics(Y8, P8, threshold=0.65)  # positives: .9 .7 -> tp=1, fp=1
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (1, 1, 3, 3)


def test_auc_ap_known_values():
    y, p = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    m = binary_metrics(y, p)
    assert m["auc"] == pytest.approx(3 / 4)  # 3 of 4 (pos, neg) pairs ordered correctly
    assert m["ap"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)  # precision 1 at recall .5, 2/3 at recall 1
    perfect = binary_metrics([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4])
    assert perfect["auc"] == 1.0 and perfect["ap"] == 1.0
    tie = binary_metrics([1, 0], [0.5, 0.5])
    assert tie["auc"] == 0.5 and tie["ap"] == 0.5


def test_torch_tensors_and_bool_labels_are_accepted():
    m = binary_metrics(torch.tensor(Y8, dtype=torch.bool), torch.tensor(P8, dtype=torch.float32))
    assert m["auc"] == pytest.approx(roc_auc_score(Y8, P8))


def test_one_class_gives_nan_and_a_warning():
    with pytest.warns(UndefinedMetricWarning, match="only one class"):
        m = binary_metrics([1, 1, 1], [0.2, 0.7, 0.9])
    assert math.isnan(m["auc"]) and math.isnan(m["ap"])
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert math.isnan(m["specificity"])  # no negatives


def test_precision_undefined_without_predicted_positives():
    m = binary_metrics([0, 1], [0.1, 0.2])
    assert math.isnan(m["precision"]) and m["sensitivity"] == 0.0


@pytest.mark.parametrize(
    ("y", "p", "match"),
    [
        ([0, 2], [0.1, 0.2], "labels 0/1"),
        ([0, 1], [0.1, 1.2], r"\[0, 1\]"),
        ([0, 1], [0.1, float("nan")], "non-finite"),
        ([0, 1, 1], [0.1, 0.2], "different lengths"),
        ([], [], "empty"),
    ],
)
def test_bad_inputs_are_rejected(y, p, match):
    with pytest.raises(ValueError, match=match):
        binary_metrics(y, p)


def test_ece_by_hand_and_perfect_calibration():
    ece, table = calibration([1, 0], [0.9, 0.9], n_bins=10)
    assert ece == pytest.approx(0.4)  # one bin: |0.9 - 0.5|
    assert table["count"].tolist() == [0] * 9 + [2]
    # bins .25 (1 of 4 positive) and .75 (3 of 4 positive): calibrated exactly
    y = [1, 0, 0, 0, 1, 1, 1, 0]
    p = [0.25] * 4 + [0.75] * 4
    ece, table = calibration(y, p, n_bins=4)
    assert ece == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(table["mean_prob"][0]) and table["frac_pos"][1] == pytest.approx(0.25)
    rng = np.random.default_rng(0)
    p = rng.random(20000)
    y = (rng.random(20000) < p).astype(int)
    assert calibration(y, p)[0] < 0.02
    assert calibration(y, p**3)[0] > 0.15  # overconfident towards 0
    assert calibration([1], [1.0], n_bins=5)[1]["count"][-1] == 1  # prob == 1 falls in the last bin


def test_curve_points():
    roc = roc_curve_points(Y8, P8)
    assert roc["fpr"][-1] == 1.0 and roc["tpr"][-1] == 1.0 and roc["fpr"][0] == 0.0
    assert roc["auc"] == pytest.approx(roc_auc_score(Y8, P8))
    pr = pr_curve_points(Y8, P8)
    assert pr["recall"][0] == 1.0 and pr["recall"][-1] == 0.0
    assert pr["prevalence"] == 0.5 and pr["ap"] == pytest.approx(average_precision_score(Y8, P8))
    with pytest.raises(ValueError, match="both classes"):
        roc_curve_points([1, 1], [0.2, 0.3])


@pytest.mark.parametrize(("metric", "reference"), [("auc", roc_auc_score), ("ap", average_precision_score)])
def test_fast_bootstrap_equals_sklearn_on_the_same_resamples(metric, reference):
    y, p = _toy(120, 1)
    p = np.round(p, 1)  # many ties
    fast = bootstrap_distribution(y, p, metric, n_boot=40, seed=7)
    slow = bootstrap_distribution(y, p, reference, n_boot=40, seed=7)
    np.testing.assert_allclose(fast, slow, atol=1e-12)


def test_bootstrap_is_stratified_deterministic_and_contains_the_estimate():
    y, p = _toy(300, 2)
    n_pos = bootstrap_distribution(y, p, lambda yy, _pp: yy.sum(), n_boot=20, seed=0)
    assert (n_pos == y.sum()).all()
    low, high = bootstrap_ci(y, p, "auc", seed=3)
    assert low < roc_auc_score(y, p) < high
    assert (low, high) == bootstrap_ci(y, p, "auc", seed=3)
    assert (low, high) != bootstrap_ci(y, p, "auc", seed=4)
    low_ap, high_ap = bootstrap_ci(y, p, "ap", seed=3)
    assert low_ap < average_precision_score(y, p) < high_ap


def test_bootstrap_narrows_with_more_data():
    widths = []
    for n in (100, 2000):
        low, high = bootstrap_ci(*_toy(n, 5), "auc", n_boot=300)
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # ~ 1 / sqrt(n)


def test_bootstrap_errors():
    with pytest.raises(ValueError, match="both classes"):
        bootstrap_ci([1, 1, 1], [0.1, 0.5, 0.9], "auc")
    with pytest.raises(ValueError, match="metric must be"):
        bootstrap_ci(Y8, P8, "f1")
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci(Y8, P8, alpha=1.5)


def test_paired_bootstrap_scores_both_predictors_on_the_same_resamples():
    y, a = _toy(400, 6)
    rng = np.random.default_rng(0)
    b = np.clip(a + rng.normal(0, 0.03, a.shape), 0, 1)  # a noisier copy: the two rank cases alike
    for metric, reference in (("auc", roc_auc_score), ("ap", average_precision_score)):
        result = paired_bootstrap(y, a, b, metric, n_boot=500, seed=1)
        assert result["diff"] == pytest.approx(reference(y, a) - reference(y, b), abs=1e-12)
        low, high = result["ci"]
        assert low < result["diff"] < high and (result["n"], result["n_boot"]) == (400, 500)
        same = bootstrap_distribution(y, a, metric, 500, 1) - bootstrap_distribution(y, b, metric, 500, 1)
        assert (low, high) == tuple(np.quantile(same, [0.025, 0.975]))
    unpaired = [bootstrap_ci(y, p, "auc", n_boot=500, seed=1) for p in (a, b)]
    paired = paired_bootstrap(y, a, b, "auc", n_boot=500, seed=1)["ci"]
    assert paired[1] - paired[0] < (unpaired[0][1] - unpaired[0][0]) / 2  # pairing cancels the shared noise
    assert paired_bootstrap(y, a, a)["ci"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="different lengths"):
        paired_bootstrap(y, a, b[:-1])
    with pytest.raises(ValueError, match="metric must be 'auc' or 'ap'"):
        paired_bootstrap(y, a, b, "f1")


def test_summarise_is_strict_json():
    y, p = _toy(200, 4)
    s = summarise(y, p, n_boot=200)
    text = json.dumps(s, allow_nan=False)
    assert json.loads(text)["auc"] == pytest.approx(roc_auc_score(y, p))
    assert s["auc_ci"][0] < s["auc"] < s["auc_ci"][1]
    assert s["ap_ci"][0] < s["ap"] < s["ap_ci"][1]
    assert s["ci_level"] == pytest.approx(0.95) and len(s["calibration"]["count"]) == 10
    assert summarise(y, p, n_boot=0)["auc_ci"] is None
    with pytest.warns(UndefinedMetricWarning):
        one = summarise([0, 0, 0], [0.1, 0.2, 0.3], n_boot=10)
    json.dumps(one, allow_nan=False)
    assert one["auc"] is None and one["auc_ci"] is None and one["sensitivity"] is None


def test_predictions_csv_roundtrip(tmp_path):
    ids = ["ISIC_0000001", "ISIC_0000002", "ISIC_0000003"]
    prob = np.array([0.1, 1 / 3, 0.9999999], dtype=np.float64)
    path = write_predictions_csv(tmp_path / "pred" / "test.csv", ids, prob)
    lines = path.read_text().splitlines()
    assert lines[0] == "image_id,melanoma" and lines[1].startswith("ISIC_0000001,")
    got_ids, got = read_predictions_csv(path)
    assert got_ids == ids and (got == prob).all()  # exact round trip
    assert sorted(p.name for p in path.parent.iterdir()) == ["test.csv"]  # no temporary file left
    f32 = torch.tensor([0.3, 0.7], dtype=torch.float32)
    _, back = read_predictions_csv(write_predictions_csv(tmp_path / "f32.csv", ["a", "b"], f32))
    assert (back.astype(np.float32) == f32.numpy()).all()


def test_predictions_csv_errors_keep_old_file(tmp_path):
    path = write_predictions_csv(tmp_path / "p.csv", ["a", "b"], [0.2, 0.8])
    before = path.read_bytes()
    with pytest.raises(ValueError, match="duplicate"):
        write_predictions_csv(path, ["a", "a"], [0.2, 0.8])
    with pytest.raises(ValueError, match="one probability per image"):
        write_predictions_csv(path, ["a", "b"], [0.2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        write_predictions_csv(path, ["a", "b"], [0.2, 1.5])
    assert path.read_bytes() == before


def test_read_predictions_csv_errors_and_extra_columns(tmp_path):
    isic2017 = tmp_path / "isic2017.csv"
    isic2017.write_text("image_id,melanoma,seborrheic_keratosis\nISIC_1,0.25,0.5\n")
    assert read_predictions_csv(isic2017) == (["ISIC_1"], pytest.approx(np.array([0.25])))
    bad_header = tmp_path / "h.csv"
    bad_header.write_text("id,prob\na,0.5\n")
    with pytest.raises(ValueError, match="lacks column"):
        read_predictions_csv(bad_header)
    bad_value = tmp_path / "v.csv"
    bad_value.write_text("image_id,melanoma\na,0.5\nb,high\n")
    with pytest.raises(ValueError, match="line 3"):
        read_predictions_csv(bad_value)


@pytest.mark.skipif(not ISIC2017.is_dir(), reason="real ISIC 2017 data (../shared/data) not available")
def test_reads_the_official_isic2017_ground_truth_csv():
    # The official Part 3 ground truth has the submission format (image_id,melanoma,...), CRLF line ends.
    ids, melanoma = read_predictions_csv(ISIC2017 / "ISIC-2017_Validation_Part3_GroundTruth.csv")
    assert len(ids) == 150 and ids[0].startswith("ISIC_") and int(melanoma.sum()) == 30
    m = binary_metrics(melanoma.astype(int), melanoma)
    assert m["auc"] == 1.0 and m["sensitivity"] == 1.0 and m["n_pos"] == 30
