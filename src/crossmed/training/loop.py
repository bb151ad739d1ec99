"""The training loop around one TrainingState: restore, train one epoch, validate, snapshot; early stopping and progress logs."""

import logging
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields

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


@dataclass(kw_only=True)
class TrainSettings:
    """The knobs of one training run (conf/train/, as crossmed.config.TrainConfig types them), by keyword."""

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

    @classmethod
    def from_config(cls, train_cfg, class_weights: list[float] | None = None) -> "TrainSettings":
        """Return the settings of conf/train (typed at composition by crossmed.config.TrainConfig)."""
        names = {f.name for f in fields(cls)} - {"patience", "class_weights", "sync_batchnorm"}
        return cls(**{name: train_cfg[name] for name in names}, patience=train_cfg.early_stopping_patience,
                   class_weights=class_weights, sync_batchnorm=train_cfg.ddp.sync_batchnorm)


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


class TrainingState:
    """Everything one training run changes as it goes: network (wrapped for DDP/compile), optimiser, schedule, AMP scaler,
    the best epoch so far and how many epochs it has not improved; restored from and saved to a resume snapshot."""

    def __init__(self, net: torch.nn.Module, train_loader, task: Task, settings: TrainSettings, device: torch.device,
                 ranks: Ranks = Ranks(), resume: dict | None = None):
        self.net, self.loader, self.task, self.settings, self.device, self.ranks = net, train_loader, task, settings, device, ranks
        self.channels_last = settings.channels_last and task.spatial_dims == 2  # channels_last is defined for 4D tensors only
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        net.to(device=device, memory_format=self.memory_format)
        if resume is not None:
            net.load_state_dict(resume["model"])
        parallel = distributed.wrap(net, device, settings.sync_batchnorm)  # DDP broadcasts rank 0's weights here
        self.model = torch.compile(parallel, backend=settings.compile_backend) if settings.compile else parallel
        self.optimizer = make_optimizer(net, settings.optimizer, settings.learning_rate, settings.weight_decay, settings.momentum)
        self.scheduler, self.per_batch = make_scheduler(self.optimizer, settings.schedule, settings.max_epochs, len(train_loader),
                                                        settings.warmup_epochs, settings.learning_rate)
        weights = torch.tensor(settings.class_weights, dtype=torch.float32, device=device) if settings.class_weights else None
        self.loss_fn = loss_function(task, weights)
        self.autocast, self.scaler = _autocast(device, settings.amp)
        self.best: EpochResult | None = None
        self.next_epoch, self.stale = 1, 0
        self.penalty: Callable[[], torch.Tensor] | None = None  # a term added to every batch's loss (FedProx's proximal term)
        if resume is not None:
            self.restore(resume)

    def restore(self, resume: dict) -> None:
        """Continue after the epoch `resume` was taken at: optimiser, schedule, scaler, RNGs, best epoch and staleness."""
        self.optimizer.load_state_dict(resume["optimizer"])
        self.scheduler.load_state_dict(resume["scheduler"])
        if self.scaler is not None and resume.get("scaler"):
            self.scaler.load_state_dict(resume["scaler"])
        restore_rng_states(resume["rng"][self.ranks.rank], self.loader)
        self.best, self.next_epoch, self.stale = EpochResult(**resume["best"]), resume["epoch"] + 1, resume["stale_epochs"]

    def skip_schedule(self, epochs: int) -> None:
        """Move the learning-rate schedule on by `epochs` epochs without training (a federated round starts where the last ended)."""
        with warnings.catch_warnings():  # stepping a schedule before any optimiser step is what is meant here
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(epochs * (len(self.loader) if self.per_batch else 1)):
                self.scheduler.step()

    def _step(self, batch) -> tuple[int, torch.Tensor]:
        """Train on one batch; return its size and summed loss (a float64 tensor on the device: reading it would wait for the GPU)."""
        images = batch["image"].to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        labels = targets(batch["label"].to(self.device, non_blocking=True), self.task)
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast:
            loss = self.loss_fn(self.model(images), labels)
            if self.penalty is not None:
                loss = loss + self.penalty()
        clip = self.settings.grad_clip_norm
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if clip:
                self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), clip)
            self.optimizer.step()
        if self.per_batch:
            self.scheduler.step()
        return len(labels), loss.detach().double() * len(labels)  # the same float64 product float(loss) * n gave

    def train_epoch(self, epoch: int) -> tuple[int, float, float, float]:
        """Train one epoch; return (images over all ranks, their summed loss, seconds, learning rate at its start)."""
        if hasattr(self.loader.batch_sampler, "set_epoch"):
            self.loader.batch_sampler.set_epoch(epoch)
        self.model.train()
        started, seen = time.perf_counter(), 0
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)  # summed on the device: no wait for the GPU per step
        learning_rate = self.optimizer.param_groups[0]["lr"]
        steps = len(self.loader)
        for step, batch in enumerate(self.loader, 1):
            count, batch_loss = self._step(batch)
            seen += count
            loss_sum += batch_loss
            if step % self.settings.log_every_steps == 0 or step == steps:
                rate = seen * self.ranks.world_size / (time.perf_counter() - started)
                log.info("epoch %d/%d step %d/%d loss %.4f %.0f img/s", epoch, self.settings.max_epochs, step, steps,
                         float(loss_sum) / seen, rate)
        if not self.per_batch:
            self.scheduler.step()
        loss_total = float(loss_sum)  # waits for the epoch's last step, so `seconds` counts all of it
        seconds = time.perf_counter() - started
        seen, loss_sum = distributed.sum_over_ranks(seen, loss_total)
        return seen, loss_sum, seconds, learning_rate

    def validate(self, val_images, val_labels):
        """Return the validation probabilities of every image (each rank predicts its share; all ranks get all rows)."""
        start, stop = distributed.shard(len(val_labels), self.ranks)
        with self.autocast:
            probabilities = predict_probabilities(self.net, val_images, self.device, self.task,
                                                  channels_last=self.channels_last, start=start, stop=stop)
        return distributed.gather_rows(probabilities)

    def record(self, result: EpochResult) -> bool:
        """Keep `result` as the best when its val AUC is higher; return whether it is."""
        is_best = self.best is None or result.val_auc > self.best.val_auc
        self.best = result if is_best else self.best
        self.stale = 0 if is_best else self.stale + 1
        return is_best

    def snapshot(self, epoch: int) -> dict:
        """Return the state that `resume` takes to continue after `epoch` exactly (a collective under DDP: RNGs are gathered)."""
        return {"epoch": epoch, "best": asdict(self.best), "stale_epochs": self.stale, "model": self.net.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "rng": distributed.gather_objects(rng_states(self.loader))}


def fit(net: torch.nn.Module, train_loader, val_images, val_labels, task: Task, settings: TrainSettings,
        device: torch.device, on_epoch: Callable[[EpochResult, bool, Callable[[], dict]], None],
        resume: dict | None = None, ranks: Ranks = Ranks()) -> EpochResult:
    """Train `net` in place and return the best epoch's result (by val AUC).

    After each epoch on_epoch(result, is_best, snapshot) is called on every rank; snapshot() (a collective
    under DDP) returns the state that `resume` takes to continue after that epoch exactly (model, optimiser,
    scheduler, scaler, every rank's RNGs). Under DDP the loss, image count and validation predictions are
    gathered from all ranks, so every rank sees the same results and takes the same early-stopping decision.
    """
    state = TrainingState(net, train_loader, task, settings, device, ranks, resume)
    for epoch in range(state.next_epoch, settings.max_epochs + 1):
        started = time.perf_counter()
        seen, loss_sum, train_seconds, learning_rate = state.train_epoch(epoch)
        probabilities = state.validate(val_images, val_labels)
        result = EpochResult(epoch, loss_sum / max(seen, 1), mean_log_loss(probabilities, val_labels, task),
                             mean_auc(probabilities, val_labels, task),
                             seen / train_seconds, time.perf_counter() - started, learning_rate, int(seen))
        is_best = state.record(result)
        log.info("epoch %d/%d done: train loss %.4f, val loss %.4f, val AUC %.4f%s, %.0f img/s, %.1f s",
                 epoch, settings.max_epochs, result.train_loss, result.val_loss, result.val_auc,
                 " (best)" if is_best else "", result.images_per_second, result.seconds)
        on_epoch(result, is_best, lambda epoch=epoch: state.snapshot(epoch))
        if settings.patience and state.stale >= settings.patience:
            log.info("early stop after epoch %d: val AUC has not improved for %d epochs (patience %d)",
                     epoch, state.stale, settings.patience)
            break
    return state.best
