"""A network's class probabilities per task type, over images in batches, and the scores validation reads from them (AUC, log loss)."""

import numpy as np
import torch
from monai.metrics import compute_roc_auc

from crossmed.data.task import Task


@torch.no_grad()
def predict_probabilities(net: torch.nn.Module, images, device: torch.device, task: Task, batch_size: int = 256,
                          channels_last: bool = False, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Return (N, classes) probabilities for (N, C, *spatial) images (an array or a lazily read split), or images[start:stop]."""
    net.eval()
    out = []
    stop = len(images) if stop is None else stop
    for first in range(start, stop, batch_size):
        batch = torch.as_tensor(np.ascontiguousarray(images[first:min(first + batch_size, stop)]), device=device)
        if channels_last and batch.ndim == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        out.append(probabilities(net(batch), task).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, task.outputs), dtype=np.float32)


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
