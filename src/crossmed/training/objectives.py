"""What training optimises for each task type: the loss, its targets and balancing class weights."""

import numpy as np
import torch

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
