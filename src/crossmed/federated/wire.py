"""Network weights on the wire: a state dict as one Flower ArrayRecord and back."""

import numpy as np
import torch
from flwr.app import Array, ArrayRecord

from crossmed.federated.messages import WEIGHTS


def to_record(weights: dict[str, torch.Tensor]) -> ArrayRecord:
    """Return the weights as an ArrayRecord of one float32 vector (the state dict's tensors in order, flattened).

    One array instead of one per tensor: Flower moves every array as its own object through each hop, and a
    network's hundred small tensors cost more in round trips than its megabytes do. Integer buffers (BatchNorm's
    batch counts) travel as float32, exactly below 2**24; aggregation averages them like any weight.
    """
    return ArrayRecord({WEIGHTS: Array(flatten(weights))})


def flatten(weights: dict[str, torch.Tensor]) -> np.ndarray:
    """Return the state dict's tensors in order as one float32 vector."""
    return torch.cat([v.detach().to("cpu", torch.float32).reshape(-1) for v in weights.values()]).numpy()


def from_record(record: ArrayRecord, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Return the weights an ArrayRecord of to_record() holds, shaped and typed as the state dict `like`."""
    return unflatten(record[WEIGHTS].numpy(), like)


def unflatten(vector: np.ndarray, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Return a flatten()ed vector as tensors shaped and typed as the state dict `like`."""
    flat = torch.from_numpy(np.array(vector, dtype=np.float32))
    expected = sum(v.numel() for v in like.values())
    if flat.numel() != expected:
        raise ValueError(f"the weights hold {flat.numel()} values; this network has {expected}")
    weights, start = {}, 0
    for name, template in like.items():
        weights[name] = flat[start:start + template.numel()].reshape(template.shape).to(template.dtype)
        start += template.numel()
    return weights
