"""The training loop: AdamW with cosine schedule, AMP on CUDA, best-validation-AUC checkpoint, progress logs."""

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from crossmed.data.task import Task
from crossmed.training.inference import predict_probabilities
from crossmed.training.objectives import loss_function, mean_auc, mean_log_loss, targets

log = logging.getLogger("crossmed.train")


@dataclass
class TrainSettings:
    """The knobs of one training run (from conf/train/)."""

    max_epochs: int
    learning_rate: float
    weight_decay: float
    amp: bool
    channels_last: bool
    log_every_steps: int


@dataclass
class EpochResult:
    """What one epoch measured."""

    epoch: int
    train_loss: float
    val_loss: float
    val_auc: float
    images_per_second: float
    seconds: float
    learning_rate: float


def _autocast(device: torch.device, amp: bool):
    if not (amp and device.type == "cuda"):
        return nullcontext(), None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return torch.autocast("cuda", dtype=dtype), scaler


def fit(net: torch.nn.Module, train_loader, val_images, val_labels, task: Task, settings: TrainSettings,
        device: torch.device, on_epoch: Callable[[EpochResult, bool], None]) -> EpochResult:
    """Train `net` in place; call on_epoch(result, is_best) after each epoch; return the best epoch's result (by val AUC)."""
    channels_last = settings.channels_last and task.spatial_dims == 2  # channels_last is defined for 4D tensors only
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    net.to(device=device, memory_format=memory_format)
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, settings.max_epochs))
    loss_fn = loss_function(task)
    autocast, scaler = _autocast(device, settings.amp)
    best: EpochResult | None = None
    steps = len(train_loader)
    for epoch in range(1, settings.max_epochs + 1):
        net.train()
        started, seen, loss_sum = time.perf_counter(), 0, 0.0
        learning_rate = optimizer.param_groups[0]["lr"]
        for step, batch in enumerate(train_loader, 1):
            images = batch["image"].to(device, non_blocking=True).contiguous(memory_format=memory_format)
            labels = targets(batch["label"].to(device, non_blocking=True), task)
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = loss_fn(net(images), labels)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            seen += len(labels)
            loss_sum += float(loss.detach()) * len(labels)
            if step % settings.log_every_steps == 0 or step == steps:
                rate = seen / (time.perf_counter() - started)
                log.info("epoch %d/%d step %d/%d loss %.4f %.0f img/s", epoch, settings.max_epochs, step, steps,
                         loss_sum / seen, rate)
        scheduler.step()
        train_seconds = time.perf_counter() - started
        with autocast:
            probabilities = predict_probabilities(net, val_images, device, task, channels_last=channels_last)
        result = EpochResult(epoch, loss_sum / max(seen, 1), mean_log_loss(probabilities, val_labels, task),
                             mean_auc(probabilities, val_labels, task),
                             seen / train_seconds, time.perf_counter() - started, learning_rate)
        is_best = best is None or result.val_auc > best.val_auc
        best = result if is_best else best
        log.info("epoch %d/%d done: train loss %.4f, val loss %.4f, val AUC %.4f%s, %.0f img/s, %.1f s",
                 epoch, settings.max_epochs, result.train_loss, result.val_loss, result.val_auc,
                 " (best)" if is_best else "", result.images_per_second, result.seconds)
        on_epoch(result, is_best)
    return best
