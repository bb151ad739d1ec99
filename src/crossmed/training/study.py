"""The train stage as a library call: data, network, loop, checkpoint, history and the MLflow run."""

import csv
import logging
import time
from dataclasses import asdict
from pathlib import Path

import mlflow
from omegaconf import DictConfig, OmegaConf

from crossmed.data.processed import DATA_CARD_FILE, DATA_CARD_MARKDOWN, MANIFEST_FILE, ProcessedData
from crossmed.devices import describe_device, resolve_device, seed_everything
from crossmed.errors import ConfigError, InputError
from crossmed.files import atomic_path
from crossmed.networks import build_network, count_parameters, fit_to_task
from crossmed.tracking import save_run_reference, start_study_run, tracking_uri
from crossmed.training.checkpoint import save_checkpoint
from crossmed.training.loaders import make_loader
from crossmed.training.loop import TrainSettings, fit
from crossmed.training.objectives import balanced_weights
from crossmed.training.resume import STATE_FILE, file_sha256, fingerprint, load_state, save_state

log = logging.getLogger("crossmed.train")


def train_study(cfg: DictConfig, checkpoint_path: str | Path, history_path: str | Path, run_reference_path: str | Path) -> dict:
    """Train the configured network on the processed data; write checkpoint, history CSV and the run reference."""
    device = resolve_device(cfg.device)
    data = ProcessedData.load(cfg.paths.processed)
    task = data.task
    train, val = data.split("train"), data.split("val")
    if len(train.labels) == 0 or len(val.labels) == 0:
        raise InputError(Path(cfg.paths.processed) / "manifest.csv", "train or val split is empty")
    seed_everything(int(cfg.seed), bool(cfg.train.deterministic), device, bool(cfg.train.cudnn_benchmark))
    net_cfg = fit_to_task(cfg.model.net, task.channels, task.outputs, task.spatial_dims)
    net = build_network(net_cfg)
    settings = TrainSettings(int(cfg.train.max_epochs), float(cfg.train.learning_rate), float(cfg.train.weight_decay),
                             bool(cfg.train.amp), bool(cfg.train.channels_last), int(cfg.train.log_every_steps),
                             int(cfg.train.early_stopping_patience or 0), str(cfg.train.schedule),
                             int(cfg.train.warmup_epochs or 0),
                             float(cfg.train.grad_clip_norm) if cfg.train.grad_clip_norm else None,
                             _class_weights(cfg.train.class_weighting, train.labels, task))
    loader = make_loader(train.images, train.labels, int(cfg.train.batch_size), train=True, augment=bool(cfg.train.augment),
                         seed=int(cfg.seed), num_workers=int(cfg.train.num_workers), pin_memory=device.type == "cuda")
    device_info = describe_device(device)
    log.info("training %s (%d parameters) for %s %s on %d images, validating on %d, device %s", cfg.model.name,
             count_parameters(net), task.type, list(task.classes), len(train.labels), len(val.labels), device_info)
    checkpoint_info = {"model": {**OmegaConf.to_container(cfg.model, resolve=True), "net": net_cfg}, "task": task.as_dict(),
                       "input_shape": list(data.images.shape[1:]), "preprocessing": list(data.card["preprocessing"]),
                       "classes": list(task.classes)}
    state_path = Path(cfg.paths.models) / "resume" / STATE_FILE
    state_id = fingerprint(OmegaConf.to_container(cfg.train, resolve=True), net_cfg, int(cfg.seed), str(device),
                           file_sha256(Path(cfg.paths.processed) / MANIFEST_FILE))
    resume = load_state(state_path, state_id) if cfg.train.resume else None
    history = list(resume["history"]) if resume else []
    best_weights = {"state": resume["best_model"]} if resume else {}
    if resume:
        mlflow.set_tracking_uri(tracking_uri(cfg.mlflow.tracking_uri))
        run = mlflow.start_run(run_id=resume["run_id"])
    else:
        run = start_study_run(cfg, run_name=f"{cfg.model.name}", extra_tags={
            "crossmed.model": cfg.model.name, "crossmed.data.source": data.card["source"]["type"], "crossmed.task": task.type,
            "crossmed.sites": ",".join(data.card["sites"]), **{f"device.{k}": str(v) for k, v in device_info.items()}})
    try:
        save_run_reference(run_reference_path, run)
        if not resume:
            mlflow.log_param("model.parameters", count_parameters(net))
            _log_data_card(cfg.paths.processed)

        def on_epoch(result, is_best, snapshot):
            history.append(asdict(result))
            mlflow.log_metrics({"train_loss": result.train_loss, "val_loss": result.val_loss, "val_auc": result.val_auc,
                                "train_images_per_second": result.images_per_second, "learning_rate": result.learning_rate},
                               step=result.epoch)
            if is_best:
                best_weights["state"] = {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}
            if cfg.train.resume:
                save_state(state_path, {**snapshot(), "history": history, "best_model": best_weights["state"],
                                        "run_id": run.info.run_id, "fingerprint": state_id, "finished": False})

        started = time.perf_counter()
        best = fit(net, loader, val.images, val.labels, task, settings, device, on_epoch, resume)
        net.load_state_dict(best_weights["state"])
        save_checkpoint(checkpoint_path, net, {**checkpoint_info, "epoch": best.epoch, "val_auc": best.val_auc})
        mlflow.log_metrics({"best_val_auc": best.val_auc, "best_epoch": best.epoch, "epochs_trained": len(history)})
        _write_history(history_path, history)
        mlflow.log_artifact(str(history_path), artifact_path="training")
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    mlflow.end_run()
    state_path.unlink(missing_ok=True)  # finished: a rerun trains afresh
    log.info("training finished after %d of %d epochs%s (%.0f s this process%s): best val AUC %.4f at epoch %d; wrote %s and %s",
             len(history), settings.max_epochs, " (early stop)" if len(history) < settings.max_epochs else "",
             time.perf_counter() - started, f", resumed after epoch {resume['epoch']}" if resume else "",
             best.val_auc, best.epoch, checkpoint_path, history_path)
    return asdict(best)


def _class_weights(mode: str, labels, task) -> list[float] | None:
    """Return the loss weights for train.class_weighting ('none' or 'balanced')."""
    if mode in (None, "none"):
        return None
    if mode == "balanced":
        weights = balanced_weights(labels, task)
        log.info("class weights (balanced on %d training images): %s", len(labels),
                 {c: round(w, 3) for c, w in zip(task.classes, weights)})
        return weights
    raise ConfigError("train.class_weighting", f"unknown mode '{mode}' (known: none, balanced)")


def _log_data_card(folder) -> None:
    """Attach the data card (JSON and Markdown) to the run and tag its headline facts."""
    card = Path(folder) / DATA_CARD_FILE
    mlflow.log_artifact(str(card), artifact_path="data")
    mlflow.log_artifact(str(Path(folder) / DATA_CARD_MARKDOWN), artifact_path="data")


def _write_history(path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
