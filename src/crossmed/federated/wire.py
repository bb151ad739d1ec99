"""Network weights on the wire: a state dict as one Flower ArrayRecord and back."""

import torch
from flwr.app import Array, ArrayRecord

from crossmed.federated.messages import WEIGHTS


def to_record(weights: dict[str, torch.Tensor]) -> ArrayRecord:
    """Return the weights as an ArrayRecord of one float32 vector (the state dict's tensors in order, flattened).

    One array instead of one per tensor: Flower moves every array as its own object through each hop, and a
    network's hundred small tensors cost more in round trips than its megabytes do. Integer buffers (BatchNorm's
    batch counts) travel as float32, exactly below 2**24; aggregation averages them like any weight.
    """
    flat = torch.cat([v.detach().to("cpu", torch.float32).reshape(-1) for v in weights.values()])
    return ArrayRecord({WEIGHTS: Array(flat.numpy())})


def from_record(record: ArrayRecord, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Return the weights an ArrayRecord of to_record() holds, shaped and typed as the state dict `like`."""
    flat = torch.from_numpy(record[WEIGHTS].numpy().copy())
    expected = sum(v.numel() for v in like.values())
    if flat.numel() != expected:
        raise ValueError(f"the weights hold {flat.numel()} values; this network has {expected}")
    weights, start = {}, 0
    for name, template in like.items():
        weights[name] = flat[start:start + template.numel()].reshape(template.shape).to(template.dtype)
        start += template.numel()
    return weights
