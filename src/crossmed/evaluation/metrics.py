"""Discrimination and operating-point metrics of a binary classifier (scikit-learn underneath)."""

import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from crossmed.errors import ConfigError


def youden_threshold(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Return the threshold maximising sensitivity + specificity - 1 (Youden's J) on these data."""
    if len(np.unique(labels)) < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(labels, probabilities)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))


def choose_threshold(method: str, labels: np.ndarray, probabilities: np.ndarray, fixed: float) -> float:
    """Return the operating threshold by `method` ('youden' on the given data, or 'fixed')."""
    if method == "youden":
        return youden_threshold(labels, probabilities)
    if method == "fixed":
        return float(fixed)
    raise ConfigError("evaluate.operating_point", f"unknown method '{method}' (known: youden, fixed)")


def binary_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict:
    """Return AUC, accuracy, sensitivity and specificity; a positive is probability >= threshold."""
    labels = np.asarray(labels).astype(int)
    predicted = (np.asarray(probabilities) >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    auc = float(roc_auc_score(labels, probabilities)) if len(np.unique(labels)) == 2 else float("nan")
    return {"auc": round(auc, 4), "accuracy": round(float((tp + tn) / max(len(labels), 1)), 4),
            "sensitivity": round(float(tp / max(tp + fn, 1)), 4), "specificity": round(float(tn / max(tn + fp, 1)), 4)}
