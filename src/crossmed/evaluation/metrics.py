"""Discrimination and operating-point metrics per task type (scikit-learn and MONAI underneath)."""

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, cohen_kappa_score, roc_curve

from crossmed.data.task import Task
from crossmed.errors import ConfigError
from crossmed.evaluation import weighted
from crossmed.evaluation.bootstrap import BootstrapSettings, binary_intervals, metric_intervals
from crossmed.model.probabilities import auc_per_class


def youden_threshold(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Return the threshold maximising sensitivity + specificity - 1 (Youden's J) on these data."""
    if len(np.unique(labels)) < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(labels, probabilities)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))


def target_threshold(labels: np.ndarray, probabilities: np.ndarray, target: float, rate: str) -> float:
    """Return the highest threshold reaching `target` sensitivity, or the lowest reaching `target` specificity, on these data."""
    if not 0.0 < target <= 1.0:
        raise ConfigError("evaluate.target", f"{target} is not a rate in (0, 1]")
    if len(np.unique(labels)) < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(labels, probabilities, drop_intermediate=False)
    if rate == "sensitivity":
        index = int(np.argmax(tpr >= target - 1e-12))  # thresholds fall as tpr rises: the first one reaching it
    else:
        index = int(np.flatnonzero(1.0 - fpr >= target - 1e-12).max())  # the last (lowest) one keeping specificity
    return float(min(thresholds[index], 1.0))


OPERATING_POINTS = ("youden", "sensitivity", "specificity", "fixed")


def choose_threshold(method: str, labels: np.ndarray, probabilities: np.ndarray, fixed: float, target: float = 0.9) -> float:
    """Return the operating threshold by `method`: Youden's J, a target sensitivity or specificity on the given data, or fixed."""
    if method == "youden":
        return youden_threshold(labels, probabilities)
    if method in ("sensitivity", "specificity"):
        return target_threshold(labels, probabilities, float(target), method)
    if method == "fixed":
        return float(fixed)
    raise ConfigError("evaluate.operating_point", f"unknown method '{method}' (known: {', '.join(OPERATING_POINTS)})")


def multiclass_metrics(labels: np.ndarray, probabilities: np.ndarray, task: Task) -> dict:
    """Return macro one-vs-rest AUC, accuracy and balanced accuracy of the most probable class (plus MAE and kappa if ordinal)."""
    actual, predicted = labels[:, 0], probabilities.argmax(axis=1)
    per_class = auc_per_class(probabilities, labels, task)
    out = {"auc": round(float(np.mean(list(per_class.values()))), 4) if per_class else float("nan"),
           "accuracy": round(float(accuracy_score(actual, predicted)), 4),
           "balanced_accuracy": round(float(balanced_accuracy_score(actual, predicted)), 4)}
    if task.type == "ordinal":
        out["mean_absolute_error"] = round(float(np.abs(actual - predicted).mean()), 4)
        out["quadratic_kappa"] = round(float(cohen_kappa_score(actual, predicted, weights="quadratic")), 4)
    return out | {f"auc_{name}": round(v, 4) for name, v in per_class.items()}


def multilabel_metrics(labels: np.ndarray, probabilities: np.ndarray, task: Task, threshold: float = 0.5) -> dict:
    """Return macro AUC over labels, per-label AUC, and accuracy of every label decision at `threshold`."""
    per_label = auc_per_class(probabilities, labels, task)
    return {"auc": round(float(np.mean(list(per_label.values()))), 4) if per_label else float("nan"),
            "accuracy": round(float(((probabilities >= threshold) == labels.astype(bool)).mean()), 4)} | \
        {f"auc_{name}": round(v, 4) for name, v in per_label.items()}


def task_metrics(task: Task, labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict:
    """Return the headline metrics of a task: binary at `threshold` on P(class 1), others by their own rule."""
    if task.type == "binary":
        values = weighted.binary_metrics(np.ones((1, len(labels))), labels[:, 0], probabilities[:, 1], threshold)
        return {name: round(float(v[0]), 4) if np.isfinite(v[0]) else None for name, v in values.items()}
    if task.multilabel:
        return multilabel_metrics(labels, probabilities, task, threshold)
    return multiclass_metrics(labels, probabilities, task)


def task_intervals(task: Task, labels: np.ndarray, probabilities: np.ndarray, patient_ids, settings: BootstrapSettings,
                   rng: np.random.Generator, threshold: float = 0.5) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Return ({metric: value and interval}, {metric: resample values}) of any task type over patient resamples."""
    patient_ids = np.asarray(patient_ids)
    if task.type == "binary":
        return binary_intervals(labels[:, 0], probabilities[:, 1], threshold, patient_ids, settings, rng)
    classes = list(task.classes)
    if task.multilabel:
        counts = np.concatenate([labels.sum(axis=0), len(labels) - labels.sum(axis=0)])
        function = lambda w: weighted.multilabel_metrics(w, labels, probabilities, classes, threshold)  # noqa: E731
    else:
        counts = np.bincount(labels[:, 0], minlength=len(classes))
        function = lambda w: weighted.multiclass_metrics(w, labels[:, 0], probabilities, classes)  # noqa: E731
    intervals, samples = metric_intervals(function, patient_ids, settings, rng, int(counts.min()) >= settings.min_per_class)
    if task.type != "ordinal":
        intervals.pop("mean_absolute_error", None)
        samples.pop("mean_absolute_error", None)
    return intervals, samples
