"""Weighted binary metrics equal scikit-learn's; patient bootstrap intervals: whole patients, seeded, undefined and unreliable flagged."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, confusion_matrix, f1_score, roc_auc_score

from crossmed.evaluation.bootstrap import BootstrapSettings, binary_intervals, difference_interval, patient_weights
from crossmed.evaluation.weighted import binary_metrics


def _cases(n=400, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.round(np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1), 1)  # rounded: many ties
    return labels, scores


def test_weighted_metrics_equal_scikit_learn_with_ties_and_weights():
    labels, scores = _cases()
    weights = np.random.default_rng(1).multinomial(len(labels), np.full(len(labels), 1 / len(labels)), size=4).astype(float)
    got = binary_metrics(np.vstack([np.ones(len(labels)), weights]), labels, scores, threshold=0.5)
    for row, w in enumerate([None, *weights]):
        assert got["auc"][row] == pytest.approx(roc_auc_score(labels, scores, sample_weight=w), abs=1e-12)
        assert got["pr_auc"][row] == pytest.approx(average_precision_score(labels, scores, sample_weight=w), abs=1e-12)
        assert got["brier"][row] == pytest.approx(brier_score_loss(labels, scores, sample_weight=w), abs=1e-12)
        predicted = (scores >= 0.5).astype(int)
        tn, fp, fn, tp = confusion_matrix(labels, predicted, sample_weight=w).ravel()
        assert got["sensitivity"][row] == pytest.approx(tp / (tp + fn)) and got["specificity"][row] == pytest.approx(tn / (tn + fp))
        assert got["ppv"][row] == pytest.approx(tp / (tp + fp)) and got["npv"][row] == pytest.approx(tn / (tn + fn))
        assert got["f1"][row] == pytest.approx(f1_score(labels, predicted, sample_weight=w))


def test_known_answers_and_undefined_metrics():
    perfect = binary_metrics(np.ones((1, 4)), np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]), 0.5)
    assert perfect["auc"][0] == 1.0 and perfect["accuracy"][0] == 1.0 and perfect["pr_auc"][0] == 1.0
    tied = binary_metrics(np.ones((1, 4)), np.array([0, 1, 0, 1]), np.full(4, 0.5), 0.5)
    assert tied["auc"][0] == 0.5 and tied["specificity"][0] == 0.0
    one_class = binary_metrics(np.ones((1, 3)), np.array([1, 1, 1]), np.array([0.2, 0.6, 0.9]), 0.5)
    assert np.isnan(one_class["auc"][0]) and np.isnan(one_class["specificity"][0]) and one_class["sensitivity"][0] == pytest.approx(2 / 3)


def test_bootstrap_draws_whole_patients():
    patients = np.repeat(["p1", "p2", "p3"], [1, 2, 3])
    for weights in patient_weights(patients, 50, np.random.default_rng(0)):
        assert (weights[:, 1] == weights[:, 2]).all() and (weights[:, 3] == weights[:, 5]).all()
        assert (weights[:, [0, 1, 3]].sum(axis=1) == 3).all(), "three patients drawn per resample"


def test_intervals_cover_the_estimate_and_widen_for_clustered_images():
    labels, scores = _cases(300)
    settings = BootstrapSettings(resamples=400, seed=0)
    per_image, _ = binary_intervals(labels, scores, 0.5, np.arange(300), settings, np.random.default_rng(0))
    auc = per_image["auc"]
    assert auc["ci_low"] < auc["value"] < auc["ci_high"] and auc["resamples_defined"] == 400 and auc["reliable"]
    # the same 300 images from 30 patients of 10 images each: fewer independent units, a wider interval
    clustered, _ = binary_intervals(np.repeat(labels[:30], 10), np.repeat(scores[:30], 10), 0.5, np.repeat(np.arange(30), 10),
                                    settings, np.random.default_rng(0))
    single, _ = binary_intervals(labels[:30], scores[:30], 0.5, np.arange(30), settings, np.random.default_rng(0))
    width = lambda m: m["auc"]["ci_high"] - m["auc"]["ci_low"]  # noqa: E731
    assert width(clustered) == pytest.approx(width(single), abs=0.05) and width(clustered) > width(per_image)
    again, _ = binary_intervals(labels, scores, 0.5, np.arange(300), settings, np.random.default_rng(0))
    assert again == per_image, "the same seed gives the same intervals"


def test_single_class_and_tiny_sets_are_flagged_not_crashed():
    settings = BootstrapSettings(resamples=100, min_per_class=10)
    only_positive, _ = binary_intervals(np.ones(5), np.linspace(0.1, 0.9, 5), 0.5, np.arange(5), settings, np.random.default_rng(0))
    assert only_positive["auc"]["value"] is None and only_positive["auc"]["reliable"] is False
    assert only_positive["sensitivity"]["value"] == 0.6
    tiny, _ = binary_intervals(np.array([0, 1, 0, 1]), np.array([0.2, 0.7, 0.4, 0.9]), 0.5, np.arange(4), settings,
                               np.random.default_rng(0))
    assert tiny["auc"]["value"] == 1.0 and tiny["auc"]["reliable"] is False and tiny["auc"]["resamples_defined"] < 100


def test_gap_between_two_sets():
    settings = BootstrapSettings(resamples=300)
    a_labels, a_scores = _cases(300, seed=1)
    b_labels, b_scores = _cases(300, seed=2)
    b_scores = np.clip(b_scores + np.random.default_rng(3).normal(0, 0.3, 300), 0, 1)  # a noisier site
    a, a_samples = binary_intervals(a_labels, a_scores, 0.5, np.arange(300), settings, np.random.default_rng(1))
    b, b_samples = binary_intervals(b_labels, b_scores, 0.5, np.arange(300), settings, np.random.default_rng(2))
    gap = difference_interval(a_samples, b_samples, a, b, settings)["auc"]
    assert gap["value"] == pytest.approx(a["auc"]["value"] - b["auc"]["value"], abs=1e-4)
    assert 0 < gap["ci_low"] < gap["value"] < gap["ci_high"]


def test_operating_points_reach_their_targets_on_validation():
    from crossmed.errors import ConfigError
    from crossmed.evaluation.metrics import choose_threshold

    labels, scores = _cases(500, seed=4)
    scores = scores + np.random.default_rng(5).random(500) * 1e-3  # few ties, so rates move in small steps
    for rate, target in (("sensitivity", 0.9), ("specificity", 0.8)):
        threshold = choose_threshold(rate, labels, scores, 0.5, target)
        metrics = binary_metrics(np.ones((1, 500)), labels, scores, threshold)
        assert metrics[rate][0] >= target
        # one step further (above the threshold for sensitivity, down to the next lower score for specificity) misses it
        further = np.nextafter(threshold, 2) if rate == "sensitivity" else scores[scores < threshold].max()
        assert binary_metrics(np.ones((1, 500)), labels, scores, further)[rate][0] < target
    assert choose_threshold("fixed", labels, scores, 0.3) == 0.3
    with pytest.raises(ConfigError, match="evaluate.operating_point"):
        choose_threshold("f1", labels, scores, 0.5)


def test_multiclass_and_multilabel_weighted_metrics_equal_scikit_learn():
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    from crossmed.evaluation.weighted import multiclass_metrics, multilabel_metrics

    rng = np.random.default_rng(7)
    labels = rng.integers(0, 3, 300)
    logits = rng.normal(0, 1, (300, 3)) + 1.5 * np.eye(3)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    weights = np.vstack([np.ones(300), rng.multinomial(300, np.full(300, 1 / 300), size=2)]).astype(float)
    got = multiclass_metrics(weights, labels, probabilities, ["a", "b", "c"])
    for row, w in enumerate(weights):
        predicted = probabilities.argmax(axis=1)
        assert got["auc"][row] == pytest.approx(np.mean([roc_auc_score(labels == c, probabilities[:, c], sample_weight=w)
                                                         for c in range(3)]))
        assert got["auc_b"][row] == pytest.approx(roc_auc_score(labels == 1, probabilities[:, 1], sample_weight=w))
        assert got["accuracy"][row] == pytest.approx(accuracy_score(labels, predicted, sample_weight=w))
        assert got["balanced_accuracy"][row] == pytest.approx(balanced_accuracy_score(labels, predicted, sample_weight=w))
        assert got["mean_absolute_error"][row] == pytest.approx(np.average(np.abs(predicted - labels), weights=w))
    assert roc_auc_score(labels, probabilities, multi_class="ovr", average="macro") == pytest.approx(got["auc"][0])
    multi = (rng.random((300, 2)) < 0.4).astype(int)
    scores = np.clip(multi * 0.3 + rng.random((300, 2)) * 0.7, 0, 1)
    got = multilabel_metrics(weights[:1], multi, scores, ["x", "y"])
    assert [got["auc_x"][0], got["auc_y"][0]] == pytest.approx(list(roc_auc_score(multi, scores, average=None)))
    assert got["accuracy"][0] == pytest.approx(((scores >= 0.5) == multi).mean())
