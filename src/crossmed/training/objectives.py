"""What training optimises and validation measures for each task type: loss, targets, probabilities, AUC."""

import numpy as np
import torch
from monai.metrics import compute_roc_auc

from crossmed.data.task import Task


def loss_function(task: Task, weights: torch.Tensor | None = None) -> torch.nn.Module:
    """Return cross-entropy for single-label tasks (ordinal as classes), per-label BCE for multi-label ones.

    `weights` are class weights for cross-entropy, or each label's positive weight for BCE.
    """
    return torch.nn.BCEWithLogitsLoss(pos_weight=weights) if task.multilabel else torch.nn.CrossEntropyLoss(weight=weights)


def balanced_weights(labels: np.ndarray, task: Task) -> list[float]:
    """Return inverse-frequency class weights (n / (classes * count)), or negatives/positives per label for multi-label."""
    if task.multilabel:
        positives = labels.sum(axis=0).astype(float)
        return [float((len(labels) - p) / p) if p else 1.0 for p in positives]
    counts = np.bincount(labels[:, 0], minlength=len(task.classes)).astype(float)
    return [float(len(labels) / (len(counts) * c)) if c else 0.0 for c in counts]


def targets(labels: torch.Tensor, task: Task) -> torch.Tensor:
    """Return the loss targets of a (B, label_columns) label batch: class indices, or 0/1 floats for multi-label."""
    return labels.float() if task.multilabel else labels[:, 0].long()


def probabilities(logits: torch.Tensor, task: Task) -> torch.Tensor:
    """Return (B, classes) probabilities: sigmoid per label for multi-label, softmax otherwise."""
    logits = logits.float()
    return torch.sigmoid(logits) if task.multilabel else torch.softmax(logits, dim=1)


def one_hot(labels: np.ndarray, task: Task) -> np.ndarray:
    """Return (N, classes) 0/1 indicators of the labels (multi-label labels already are)."""
    if task.multilabel:
        return labels.astype(np.int64)
    return np.eye(len(task.classes), dtype=np.int64)[labels[:, 0]]


def auc_per_class(probs: np.ndarray, labels: np.ndarray, task: Task) -> dict[str, float]:
    """Return MONAI's ROC AUC per class (one-vs-rest); classes with one label value in `labels` are left out."""
    indicators = one_hot(labels, task)
    columns = [1] if task.type == "binary" else range(len(task.classes))
    out = {}
    for c in columns:
        if 0 < indicators[:, c].sum() < len(indicators):
            out[task.classes[c]] = float(compute_roc_auc(torch.as_tensor(probs[:, c]), torch.as_tensor(indicators[:, c])))
    return out


def mean_auc(probs: np.ndarray, labels: np.ndarray, task: Task) -> float:
    """Return the AUC (binary) or macro AUC over classes; 0.5 when no class has both label values."""
    values = auc_per_class(probs, labels, task)
    return float(np.mean(list(values.values()))) if values else 0.5


def mean_log_loss(probs: np.ndarray, labels: np.ndarray, task: Task) -> float:
    """Return the mean negative log-likelihood of the labels under `probs` (binary cross-entropy per label for multi-label)."""
    p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    if task.multilabel:
        return float(-(labels * np.log(p) + (1 - labels) * np.log(1 - p)).mean())
    return float(-np.log(p[np.arange(len(p)), labels[:, 0]]).mean()) if len(p) else float("nan")
