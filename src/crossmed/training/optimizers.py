"""Optimisers from conf/train: AdamW (default), Adam, or SGD with Nesterov momentum that leaves biases and norm scales undecayed."""

import torch

from crossmed.errors import ConfigError

OPTIMIZERS = ("adamw", "adam", "sgd")


def parameter_groups(net: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Return two groups: weights with `weight_decay`, and 1-D parameters (biases, norm scales) without it."""
    decay = [p for p in net.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(net: torch.nn.Module, name: str, learning_rate: float, weight_decay: float,
                   momentum: float = 0.9) -> torch.optim.Optimizer:
    """Return the optimiser named by train.optimizer; raise ConfigError for an unknown name."""
    if name == "adamw":
        return torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=weight_decay)
    if name == "adam":  # L2 penalty in the gradient (coupled), as torch.optim.Adam defines weight_decay
        return torch.optim.Adam(net.parameters(), lr=learning_rate, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(parameter_groups(net, weight_decay), lr=learning_rate, momentum=momentum,
                               nesterov=momentum > 0)
    raise ConfigError("train.optimizer", f"unknown optimizer '{name}' (known: {', '.join(OPTIMIZERS)})")
