"""Class probabilities of a network over a sequence of images, in batches, without gradients."""

import numpy as np
import torch

from crossmed.data.task import Task
from crossmed.training.objectives import probabilities


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
