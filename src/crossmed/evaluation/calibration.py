"""Calibration of predicted probabilities: Brier score, expected calibration error, reliability bins, temperature scaling.

Binary tasks are judged on P(positive); multi-class on the most probable class's probability against being right
(top-label calibration); multi-label on every label's probability.

Temperature scaling is scikit-learn's (`CalibratedClassifierCV(method="temperature")`), fitted on the
validation set only and applied unchanged to the test sets; it rescales confidence without changing the
ranking (AUC) or the decisions at the operating point.
"""

import logging

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import brier_score_loss

from crossmed.data.task import Task

log = logging.getLogger("crossmed.evaluate")


def reliability_bins(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Return equal-width probability bins with their count, mean predicted probability and observed positive rate."""
    labels, scores = np.asarray(labels, dtype=float), np.asarray(scores, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(scores, edges[1:-1], right=False), 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = index == b
        count = int(inside.sum())
        rows.append({"bin": b, "lower": round(edges[b], 4), "upper": round(edges[b + 1], 4), "count": count,
                     "mean_predicted": round(float(scores[inside].mean()), 6) if count else None,
                     "observed": round(float(labels[inside].mean()), 6) if count else None})
    return pd.DataFrame(rows)


def expected_calibration_error(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> float:
    """Return ECE: the case-weighted mean |observed positive rate - mean predicted probability| over equal-width bins."""
    table = reliability_bins(labels, scores, bins)
    filled = table[table["count"] > 0]
    if filled.empty:
        return float("nan")
    gaps = (filled["observed"].astype(float) - filled["mean_predicted"].astype(float)).abs()
    return float((gaps * filled["count"]).sum() / filled["count"].sum())


def brier_score(labels: np.ndarray, scores: np.ndarray) -> float:
    """Return the mean squared difference between P(positive) and the 0/1 outcome."""
    return float(np.mean((np.asarray(scores, dtype=float) - np.asarray(labels, dtype=float)) ** 2))


class _GivenProbabilities(ClassifierMixin, BaseEstimator):
    """A 'classifier' whose inputs are already its class probabilities, so scikit-learn can calibrate a network's output."""

    def fit(self, X, y):
        """Record the classes; there is nothing to learn."""
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        """Return the given probabilities."""
        return np.asarray(X, dtype=float)

    def predict(self, X):
        """Return the most probable class."""
        return self.classes_[np.asarray(X).argmax(axis=1)]


class TemperatureScaling:
    """Temperature scaling fitted on validation probabilities (N x classes) and their class labels."""

    def __init__(self, probabilities: np.ndarray, labels: np.ndarray):
        given = _GivenProbabilities().fit(probabilities, labels)
        everything = [(np.arange(len(labels)), np.arange(len(labels)))]  # nothing to cross-validate: the inputs are the outputs
        self._calibrated = CalibratedClassifierCV(FrozenEstimator(given), method="temperature", cv=everything).fit(
            probabilities, labels)

    @property
    def temperature(self) -> float:
        """Return T (logits are divided by T: above 1 the network was over-confident)."""
        return float(1.0 / self._calibrated.calibrated_classifiers_[0].calibrators[0].beta_)

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        """Return the rescaled probabilities."""
        return self._calibrated.predict_proba(np.asarray(probabilities, dtype=float))


def calibration_pairs(task: Task, labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the (outcome, probability) pairs calibration is judged on, per task type (see the module docstring)."""
    if task.type == "binary":
        return labels[:, 0].astype(float), probabilities[:, 1]
    if task.multilabel:
        return labels.astype(float).ravel(), probabilities.ravel()
    return (probabilities.argmax(axis=1) == labels[:, 0]).astype(float), probabilities.max(axis=1)


def task_brier(task: Task, labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Return the Brier score: binary on P(positive), multi-class summed over classes (scikit-learn's), multi-label per label."""
    if task.type == "binary":
        return brier_score(labels[:, 0], probabilities[:, 1])
    if task.multilabel:
        return brier_score(labels.ravel(), probabilities.ravel())
    return float(brier_score_loss(labels[:, 0], probabilities, labels=list(range(probabilities.shape[1])), scale_by_half=False))


def calibration_summary(task: Task, labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> dict:
    """Return the Brier score and ECE of one set's predictions."""
    outcome, scores = calibration_pairs(task, labels, probabilities)
    return {"brier": round(task_brier(task, labels, probabilities), 4),
            "ece": round(expected_calibration_error(outcome, scores, bins), 4)}


def fit_temperature(task: Task, probabilities: np.ndarray, labels: np.ndarray) -> "TemperatureScaling | None":
    """Return temperature scaling fitted on validation, or None (with the reason logged) where it does not apply."""
    if task.multilabel:
        log.info("temperature scaling skipped: a multi-label network has one sigmoid per label, not one softmax")
        return None
    missing = sorted(set(range(probabilities.shape[1])) - set(np.unique(labels[:, 0]).tolist()))
    if missing:
        log.info("temperature scaling skipped: validation has no image of class(es) %s", [task.classes[i] for i in missing])
        return None
    fitted = TemperatureScaling(probabilities, labels[:, 0])
    log.info("temperature scaling fitted on %d validation images: T = %.3f", len(labels), fitted.temperature)
    return fitted
