"""The training loop: optimiser and schedule, AMP on CUDA, optional torch.compile and DDP, early stopping, progress logs."""

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch

from crossmed.data.task import Task
from crossmed.training import distributed
from crossmed.training.distributed import Ranks
from crossmed.model.probabilities import mean_auc, mean_log_loss, predict_probabilities
from crossmed.training.objectives import loss_function, targets
from crossmed.training.optimizers import make_optimizer
from crossmed.training.resume import restore_rng_states, rng_states
from crossmed.training.schedules import make_scheduler

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
    patience: int = 0  # early stopping: epochs without a better val AUC before stopping; 0 = never
    schedule: str = "cosine"
    warmup_epochs: int = 0
    grad_clip_norm: float | None = None  # clip the global gradient norm to this value; None = no clipping
    class_weights: list[float] | None = None  # loss weights per class (pos_weight per label for multi-label)
    optimizer: str = "adamw"
    momentum: float = 0.9  # SGD only
    compile: bool = False  # torch.compile the network for training
    sync_batchnorm: bool = True  # DDP on CUDA: batch statistics over all ranks
    compile_backend: str = "inductor"  # torch.compile backend; "eager" only captures graphs (a quick check)


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
    train_images: int = 0  # images trained on in this epoch, over all ranks


def _autocast(device: torch.device, amp: bool):
    if not (amp and device.type == "cuda"):
        return nullcontext(), None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return torch.autocast("cuda", dtype=dtype), scaler


def fit(net: torch.nn.Module, train_loader, val_images, val_labels, task: Task, settings: TrainSettings,
        device: torch.device, on_epoch: Callable[[EpochResult, bool, Callable[[], dict]], None],
        resume: dict | None = None, ranks: Ranks = Ranks()) -> EpochResult:
    """Train `net` in place and return the best epoch's result (by val AUC).

    After each epoch on_epoch(result, is_best, snapshot) is called on every rank; snapshot() (a collective
    under DDP) returns the state that `resume` takes to continue after that epoch exactly (model, optimiser,
    scheduler, scaler, every rank's RNGs). Under DDP the loss, image count and validation predictions are
    gathered from all ranks, so every rank sees the same results and takes the same early-stopping decision.
    """
    channels_last = settings.channels_last and task.spatial_dims == 2  # channels_last is defined for 4D tensors only
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    net.to(device=device, memory_format=memory_format)
    if resume is not None:
        net.load_state_dict(resume["model"])
    parallel = distributed.wrap(net, device, settings.sync_batchnorm)  # DDP broadcasts rank 0's weights here
    model = torch.compile(parallel, backend=settings.compile_backend) if settings.compile else parallel
    optimizer = make_optimizer(net, settings.optimizer, settings.learning_rate, settings.weight_decay, settings.momentum)
    scheduler, per_batch = make_scheduler(optimizer, settings.schedule, settings.max_epochs, len(train_loader),
                                          settings.warmup_epochs, settings.learning_rate)
    weights = torch.tensor(settings.class_weights, dtype=torch.float32, device=device) if settings.class_weights else None
    loss_fn = loss_function(task, weights)
    autocast, scaler = _autocast(device, settings.amp)
    best: EpochResult | None = None
    first, stale = 1, 0
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        if scaler is not None and resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
        restore_rng_states(resume["rng"][ranks.rank], train_loader)
        best, first, stale = EpochResult(**resume["best"]), resume["epoch"] + 1, resume["stale_epochs"]
    steps = len(train_loader)
    val_start, val_stop = distributed.shard(len(val_labels), ranks)
    for epoch in range(first, settings.max_epochs + 1):
        if hasattr(train_loader.batch_sampler, "set_epoch"):
            train_loader.batch_sampler.set_epoch(epoch)
        model.train()
        started, seen, loss_sum = time.perf_counter(), 0, 0.0
        learning_rate = optimizer.param_groups[0]["lr"]
        for step, batch in enumerate(train_loader, 1):
            images = batch["image"].to(device, non_blocking=True).contiguous(memory_format=memory_format)
            labels = targets(batch["label"].to(device, non_blocking=True), task)
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = loss_fn(model(images), labels)
            if scaler is not None:
                scaler.scale(loss).backward()
                if settings.grad_clip_norm:
                    scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
                    torch.nn.utils.clip_grad_norm_(net.parameters(), settings.grad_clip_norm)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                if settings.grad_clip_norm:
                    torch.nn.utils.clip_grad_norm_(net.parameters(), settings.grad_clip_norm)
                optimizer.step()
            if per_batch:
                scheduler.step()
            seen += len(labels)
            loss_sum += float(loss.detach()) * len(labels)
            if step % settings.log_every_steps == 0 or step == steps:
                rate = seen * ranks.world_size / (time.perf_counter() - started)
                log.info("epoch %d/%d step %d/%d loss %.4f %.0f img/s", epoch, settings.max_epochs, step, steps,
                         loss_sum / seen, rate)
        if not per_batch:
            scheduler.step()
        train_seconds = time.perf_counter() - started
        seen, loss_sum = distributed.sum_over_ranks(seen, loss_sum)
        with autocast:
            probabilities = predict_probabilities(net, val_images, device, task, channels_last=channels_last,
                                                  start=val_start, stop=val_stop)
        probabilities = distributed.gather_rows(probabilities)
        result = EpochResult(epoch, loss_sum / max(seen, 1), mean_log_loss(probabilities, val_labels, task),
                             mean_auc(probabilities, val_labels, task),
                             seen / train_seconds, time.perf_counter() - started, learning_rate, int(seen))
        is_best = best is None or result.val_auc > best.val_auc
        best = result if is_best else best
        stale = 0 if is_best else stale + 1
        log.info("epoch %d/%d done: train loss %.4f, val loss %.4f, val AUC %.4f%s, %.0f img/s, %.1f s",
                 epoch, settings.max_epochs, result.train_loss, result.val_loss, result.val_auc,
                 " (best)" if is_best else "", result.images_per_second, result.seconds)

        def snapshot(epoch=epoch, best=best, stale=stale) -> dict:
            return {"epoch": epoch, "best": asdict(best), "stale_epochs": stale, "model": net.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "rng": distributed.gather_objects(rng_states(train_loader))}

        on_epoch(result, is_best, snapshot)
        if settings.patience and stale >= settings.patience:
            log.info("early stop after epoch %d: val AUC has not improved for %d epochs (patience %d)",
                     epoch, stale, settings.patience)
            break
    return best
