"""Learning-rate schedules from conf/train: cosine or one-cycle, with optional linear warm-up."""

import torch

from crossmed.errors import ConfigError

SCHEDULES = ("cosine", "onecycle", "constant")


def make_scheduler(optimizer: torch.optim.Optimizer, name: str, max_epochs: int, steps_per_epoch: int,
                   warmup_epochs: int, learning_rate: float) -> tuple[torch.optim.lr_scheduler.LRScheduler, bool]:
    """Return (scheduler, steps_per_batch): cosine and constant step per epoch (after warm-up), one-cycle per batch."""
    if name == "onecycle":  # its own warm-up: pct_start of the steps
        pct = min(0.5, max(warmup_epochs, 1) / max(max_epochs, 1)) if warmup_epochs else 0.3
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=max(1, max_epochs * steps_per_epoch),
                                                   pct_start=pct), True
    if name not in SCHEDULES:
        raise ConfigError("train.schedule", f"unknown schedule '{name}' (known: {', '.join(SCHEDULES)})")
    if warmup_epochs >= max_epochs and warmup_epochs:
        raise ConfigError("train.warmup_epochs", f"{warmup_epochs} must be below train.max_epochs ({max_epochs})")
    main = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, max_epochs - warmup_epochs)) if name == "cosine"
            else torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0))
    if not warmup_epochs:
        return main, False
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0 / (warmup_epochs + 1), total_iters=warmup_epochs)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, main], milestones=[warmup_epochs]), False
