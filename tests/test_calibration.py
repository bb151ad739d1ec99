"""Calibration: ECE and reliability bins by direct computation, temperature scaling fitted by scikit-learn."""

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from crossmed.evaluation.calibration import (TemperatureScaling, brier_score, expected_calibration_error,
                                             reliability_bins)


def test_ece_and_bins_on_a_known_case():
    labels = np.array([0, 0, 1, 1, 1, 0])
    scores = np.array([0.05, 0.15, 0.15, 0.95, 0.85, 0.85])
    # bin 0: 0.05 -> 0/1 observed, gap 0.05; bin 1: (0.15, 0.15) observed 0.5 gap 0.35; bin 8: (0.85, 0.85) observed 0.5,
    # gap 0.35; bin 9: 0.95 observed 1, gap 0.05
    assert expected_calibration_error(labels, scores) == pytest.approx((0.05 + 2 * 0.35 + 2 * 0.35 + 0.05) / 6)
    table = reliability_bins(labels, scores)
    assert table["count"].sum() == 6 and len(table) == 10
    filled = table[table["count"] > 0]
    observed, predicted = calibration_curve(labels, scores, n_bins=10)
    assert np.allclose(filled["observed"].astype(float), observed) and np.allclose(filled["mean_predicted"].astype(float), predicted)
    assert brier_score(labels, scores) == pytest.approx(brier_score_loss(labels, scores))


def test_temperature_scaling_repairs_over_confidence_and_keeps_ranking():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000)
    logits = 4.0 * ((2 * labels - 1) + rng.normal(0, 1.2, 2000))  # four times too confident
    p1 = 1 / (1 + np.exp(-logits))
    probabilities = np.column_stack([1 - p1, p1])
    fitted = TemperatureScaling(probabilities[:1000], labels[:1000])  # fitted on one half, judged on the other
    assert fitted.temperature == pytest.approx(4.0 * 1.2**2 / 2, rel=0.15)  # true log-odds are 2x/1.2^2, the logits 4x
    test, scaled = probabilities[1000:], fitted.apply(probabilities[1000:])
    assert log_loss(labels[1000:], scaled) < log_loss(labels[1000:], test)
    assert expected_calibration_error(labels[1000:], scaled[:, 1]) < expected_calibration_error(labels[1000:], test[:, 1])
    assert roc_auc_score(labels[1000:], scaled[:, 1]) == pytest.approx(roc_auc_score(labels[1000:], test[:, 1]))


def test_calibrated_scores_have_small_ece_and_unit_temperature():
    rng = np.random.default_rng(1)
    p1 = rng.random(5000)
    labels = (rng.random(5000) < p1).astype(int)
    assert expected_calibration_error(labels, p1) < 0.03
    assert TemperatureScaling(np.column_stack([1 - p1, p1]), labels).temperature == pytest.approx(1.0, abs=0.1)


def test_multiclass_and_multilabel_calibration_and_temperature():
    from crossmed.data.task import Task
    from crossmed.evaluation.calibration import calibration_pairs, fit_temperature, task_brier

    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 900)
    logits = 3.0 * (np.eye(3)[labels] * 2 + rng.normal(0, 1.0, (900, 3)))  # the true log-odds are 2x, these 3x
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    task = Task("multiclass", ("a", "b", "c"), 1, 2)
    outcome, confidence = calibration_pairs(task, labels[:, None], probabilities)
    assert (outcome == (probabilities.argmax(axis=1) == labels)).all() and (confidence == probabilities.max(axis=1)).all()
    assert task_brier(task, labels[:, None], probabilities) == pytest.approx(((np.eye(3)[labels] - probabilities) ** 2).sum(axis=1).mean())
    fitted = fit_temperature(task, probabilities[:450], labels[:450, None])
    assert fitted.temperature == pytest.approx(1.5, rel=0.15), "over-confidence found and sized"
    scaled = fitted.apply(probabilities[450:])
    assert (scaled.argmax(axis=1) == probabilities[450:].argmax(axis=1)).all(), "decisions unchanged"
    assert expected_calibration_error(*calibration_pairs(task, labels[450:, None], scaled)) < \
        expected_calibration_error(*calibration_pairs(task, labels[450:, None], probabilities[450:]))
    assert fit_temperature(task, probabilities[:6], np.array([[0], [1], [0], [1], [0], [1]])) is None, "class c missing"
    assert fit_temperature(task, probabilities[:3], np.array([[0], [1], [2]])) is not None, "tiny validation sets still fit"
    multi = Task("multilabel", ("x", "y"), 1, 2)
    both, p = rng.integers(0, 2, (50, 2)), rng.random((50, 2))
    assert task_brier(multi, both, p) == pytest.approx(np.mean([brier_score_loss(both[:, i], p[:, i]) for i in range(2)]))
    assert fit_temperature(multi, p, both) is None, "sigmoid outputs are not temperature-scaled as one softmax"


def test_zero_width_intervals_are_marked_unreliable_and_printed_with_a_mark():
    from crossmed.evaluation.bootstrap import BootstrapSettings, interval
    from crossmed.reporting.sections import with_ci

    settings = BootstrapSettings(resamples=5)
    flat = interval(1.0, np.ones(5), settings, reliable=True)  # every resample agrees: specificity 1.000 (1.000 to 1.000)
    spread = interval(0.8, np.array([0.7, 0.75, 0.8, 0.85, 0.9]), settings, reliable=True)
    assert flat["reliable"] is False and spread["reliable"] is True
    assert with_ci(flat) == "1.000 (1.000 to 1.000) †" and "†" not in with_ci(spread)
    assert interval(0.8, np.array([0.7, 0.9]), settings, reliable=False)["reliable"] is False, "too few cases of a class"


def test_reliability_figure_writes_each_bins_case_count(tmp_path, monkeypatch):
    import pandas as pd

    from crossmed.evaluation import plots

    written = []
    monkeypatch.setattr(plots.plt, "close", lambda fig: written.extend(t.get_text() for t in fig.axes[0].texts))
    points = pd.DataFrame({"mean_predicted": [0.1, 0.5, 0.9], "observed": [0.0, 0.6, 1.0], "count": [12, 3, 40]})
    plots.curve_figure({"internal_test": (points, "ECE 0.05")}, "mean_predicted", "observed", ("p", "o"), "Reliability",
                       tmp_path / "calibration.png", counts="count")
    assert written == ["12", "3", "40"] and (tmp_path / "calibration.png").stat().st_size > 0
