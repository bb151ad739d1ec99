"""Binary metrics for many weightings of the same cases at once: the engine behind patient bootstrap intervals.

Each row of a weight matrix W (resamples x cases) says how often each case was drawn; every metric is
computed for all rows together with matrix products, so 1,000 resamples of 10,000 cases take seconds.
With W all ones the results equal scikit-learn's (tests check this): ROC AUC with ties counted half,
average precision as `average_precision_score` defines it, and the confusion-matrix ratios.
"""

import numpy as np
from scipy import sparse

THRESHOLD_METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "f1")
RANKING_METRICS = ("auc", "pr_auc")
BINARY_METRICS = RANKING_METRICS + THRESHOLD_METRICS + ("brier",)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Return numerator / denominator, NaN where the denominator is 0 (the metric is undefined there)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def _score_groups(scores: np.ndarray) -> sparse.csr_matrix:
    """Return a (cases x distinct scores) 0/1 matrix, distinct scores in descending order (tied cases share a column)."""
    distinct, column = np.unique(-scores, return_inverse=True)
    return sparse.csr_matrix((np.ones(len(scores)), (np.arange(len(scores)), column)), shape=(len(scores), len(distinct)))


def ranking_metrics(weights: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    """Return ROC AUC and average precision for each weight row (NaN where a row has no positives or no negatives)."""
    groups = _score_groups(scores)
    positives = (groups.T @ (weights * labels).T).T  # per distinct score, highest first
    negatives = (groups.T @ (weights * (1 - labels)).T).T
    total_pos, total_neg = positives.sum(axis=1), negatives.sum(axis=1)
    negatives_below = total_neg[:, None] - np.cumsum(negatives, axis=1)  # negatives scored strictly lower
    auc = _ratio((positives * (negatives_below + 0.5 * negatives)).sum(axis=1), total_pos * total_neg)
    true_pos, false_pos = np.cumsum(positives, axis=1), np.cumsum(negatives, axis=1)
    precision = _ratio(true_pos, true_pos + false_pos)
    pr_auc = _ratio((positives * np.nan_to_num(precision)).sum(axis=1), total_pos)
    return {"auc": np.where(total_neg > 0, auc, np.nan), "pr_auc": pr_auc}


def threshold_metrics(weights: np.ndarray, labels: np.ndarray, predicted: np.ndarray) -> dict[str, np.ndarray]:
    """Return accuracy, balanced accuracy, sensitivity, specificity, PPV, NPV and F1 of 0/1 decisions for each weight row."""
    labels, predicted = labels.astype(bool), predicted.astype(bool)
    tp, fn = weights @ (labels & predicted), weights @ (labels & ~predicted)
    fp, tn = weights @ (~labels & predicted), weights @ (~labels & ~predicted)
    sensitivity, specificity = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    return {"accuracy": _ratio(tp + tn, tp + tn + fp + fn), "balanced_accuracy": (sensitivity + specificity) / 2,
            "sensitivity": sensitivity, "specificity": specificity, "ppv": _ratio(tp, tp + fp), "npv": _ratio(tn, tn + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn)}


def binary_metrics(weights: np.ndarray, labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    """Return every binary metric (BINARY_METRICS) for each weight row; a positive decision is score >= threshold."""
    labels = np.asarray(labels, dtype=float)
    scores = np.asarray(scores, dtype=float)
    out = ranking_metrics(weights, labels, scores) | threshold_metrics(weights, labels, scores >= threshold)
    out["brier"] = _ratio(weights @ (scores - labels) ** 2, weights.sum(axis=1))
    return out


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    """Return the mean over columns ignoring NaN, NaN for a row without any defined value."""
    defined = np.isfinite(values)
    counts = defined.sum(axis=1)
    return np.where(counts > 0, np.where(defined, values, 0).sum(axis=1) / np.maximum(counts, 1), np.nan)


def multiclass_metrics(weights: np.ndarray, labels: np.ndarray, probabilities: np.ndarray,
                       classes: list[str]) -> dict[str, np.ndarray]:
    """Return macro one-vs-rest AUC, per-class AUC, accuracy and balanced accuracy of the most probable class, and MAE."""
    labels = np.asarray(labels).astype(int)
    per_class = {f"auc_{name}": ranking_metrics(weights, (labels == c).astype(float), probabilities[:, c])["auc"]
                 for c, name in enumerate(classes)}
    predicted = probabilities.argmax(axis=1)
    correct = (predicted == labels).astype(float)
    recalls = np.column_stack([_ratio(weights @ (correct * (labels == c)), weights @ (labels == c).astype(float))
                               for c in range(len(classes))])
    return {"auc": _nanmean_rows(np.column_stack(list(per_class.values()))),
            "accuracy": _ratio(weights @ correct, weights.sum(axis=1)), "balanced_accuracy": _nanmean_rows(recalls),
            "mean_absolute_error": _ratio(weights @ np.abs(predicted - labels).astype(float), weights.sum(axis=1)),
            **per_class}


def multilabel_metrics(weights: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, classes: list[str],
                       threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Return macro AUC over labels, each label's AUC, and the share of correct label decisions at `threshold`."""
    labels = np.asarray(labels, dtype=float)
    per_label = {f"auc_{name}": ranking_metrics(weights, labels[:, i], probabilities[:, i])["auc"]
                 for i, name in enumerate(classes)}
    correct = ((probabilities >= threshold) == labels.astype(bool)).mean(axis=1)
    return {"auc": _nanmean_rows(np.column_stack(list(per_label.values()))),
            "accuracy": _ratio(weights @ correct, weights.sum(axis=1)), **per_label}
