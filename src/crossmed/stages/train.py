"""Stage `train`: data, network, loop, checkpoint, history and the MLflow run.

Reads paths.processed; writes paths.checkpoint, paths.history and paths.training_run (the MLflow run reference).
"""

import csv
import logging
import time
from dataclasses import asdict
from pathlib import Path

import mlflow
import numpy as np
from omegaconf import DictConfig, OmegaConf

from crossmed.data.processed import DATA_CARD_FILE, DATA_CARD_MARKDOWN, MANIFEST_FILE, ProcessedData, data_fingerprint
from crossmed.devices import describe_device, resolve_device, seed_everything
from crossmed.errors import ConfigError, InputError
from crossmed.files import atomic_path
from crossmed.model.networks import build_network, count_parameters, fit_to_task
from crossmed.reproducibility import describe, in_effect
from crossmed.tracking import (EPOCH, TRAINING, end_failed_run, is_connection_error, log_dataset, log_trained_model,
                               metric_names, open_store, package_versions, run_name, save_run_reference, server_answers,
                               start_study_run, tag_file, tracking_lost)
from crossmed.model.checkpoint import save_checkpoint
from crossmed.training import distributed
from crossmed.training.distributed import Ranks, check_strategy, current_ranks, started_by_torchrun
from crossmed.training.loaders import make_loader
from crossmed.training.loop import TrainSettings, fit
from crossmed.training.objectives import balanced_weights
from crossmed.training.resume import STATE_FILE, STATE_FORMAT, file_sha256, fingerprint, load_state, save_state

log = logging.getLogger("crossmed.train")
TIMING_FIELDS = ("images_per_second", "seconds")  # in MLflow and the log, never in DVC-tracked files


def run(cfg: DictConfig) -> dict:
    """Train the configured network on the processed data; write checkpoint, history CSV and the run reference; return the best epoch.

    Under DDP (started by torchrun) every rank trains; only rank 0 logs to MLflow and writes files.
    """
    if check_strategy(cfg.train) == "federated":
        from crossmed.stages import federated_train

        return federated_train.run(cfg)
    ranks = current_ranks()
    device = resolve_device(str(cfg.train.device))
    if started_by_torchrun():  # also a group of one: train.strategy=ddp asked for DDP, on one GPU as on eight
        device = distributed.start(ranks, device, str(cfg.train.ddp.backend))
    try:
        return _train(cfg, ranks, device, Path(cfg.paths.checkpoint), Path(cfg.paths.history), Path(cfg.paths.training_run))
    finally:
        distributed.stop()


def _train(cfg: DictConfig, ranks: Ranks, device, checkpoint_path: Path, history_path: Path, run_reference_path: Path) -> dict:
    data = ProcessedData.load(cfg.paths.processed)
    task = data.task
    train, val = data.split("train"), data.split("val")
    if len(train.labels) == 0 or len(val.labels) == 0:
        raise InputError(Path(cfg.paths.processed) / "manifest.csv", "train or val split is empty")
    seed_everything(int(cfg.seed), cfg.train.deterministic, device, cfg.train.cudnn_benchmark)
    arithmetic = describe(in_effect(cfg))
    net_cfg = fit_to_task(cfg.model.net, task.channels, task.outputs, task.spatial_dims, tuple(data.images.shape[2:]))
    net = build_network(net_cfg)
    settings = _settings(cfg.train, train.labels, task)
    loader = make_loader(train.images, train.labels, cfg.train.batch_size, train=True, augment=cfg.train.augment,
                         seed=int(cfg.seed), num_workers=cfg.train.num_workers, pin_memory=device.type == "cuda",
                         sample_weights=_sample_weights(cfg.train.sampler, train.labels, task), ranks=ranks)
    device_info = {**describe_device(device), "processes": ranks.world_size}
    log.info("arithmetic: %s (%s)", arithmetic["arithmetic"], arithmetic["scope"])
    log.info("training %s (%d parameters) for %s %s on %d images, validating on %d, device %s", cfg.model.name,
             count_parameters(net), task.type, list(task.classes), len(train.labels), len(val.labels), device_info)
    log.info("seed %d, deterministic %s, %s", int(cfg.seed), cfg.train.deterministic,
             ", ".join(f"{k} {v}" for k, v in package_versions().items() if k in ("torch", "monai", "numpy")))
    info = checkpoint_info(cfg, data_facts(data), net_cfg, arithmetic["arithmetic"])
    state_path = Path(cfg.paths.models) / "resume" / STATE_FILE
    state_id = fingerprint(STATE_FORMAT, OmegaConf.to_container(cfg.train, resolve=True), net_cfg, int(cfg.seed),
                           device.type, ranks.world_size, file_sha256(Path(cfg.paths.processed) / MANIFEST_FILE),
                           arithmetic["arithmetic"])
    resume = load_state(state_path, state_id) if cfg.train.resume else None
    history = list(resume["history"]) if resume else []
    best_weights = {"state": resume["best_model"]} if resume else {}
    data_sha256 = data_fingerprint(cfg.paths.processed) if ranks.main else None
    run = _open_run(cfg, resume, data, task, device_info, arithmetic, data_sha256) if ranks.main else None
    saved_epoch = [resume["epoch"] if resume else None]  # the epoch the state on disk continues after
    try:
        if ranks.main:
            save_run_reference(run_reference_path, run)
            if resume:
                _log_missing_epochs(run.info.run_id, history)
            else:
                mlflow.log_param("model.parameters", count_parameters(net))
                log_data_card(cfg.paths.processed, f"{cfg.study.name} processed", data_sha256)

        def on_epoch(result, is_best, snapshot):
            history.append(asdict(result))
            if is_best:
                best_weights["state"] = {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}
            state = snapshot() if cfg.train.resume else None  # every rank takes part: RNG states are gathered
            if not ranks.main:
                return
            if state is not None:  # saved before the epoch is logged: an MLflow outage loses no training
                save_state(state_path, {**state, "history": history, "best_model": best_weights["state"],
                                        "run_id": run.info.run_id, "fingerprint": state_id, "finished": False})
                saved_epoch[0] = result.epoch
            mlflow.log_metrics(_epoch_metrics(asdict(result)), step=result.epoch)

        started = time.perf_counter()
        best = fit(net, loader, val.images, val.labels, task, settings, device, on_epoch, resume, ranks)
        if ranks.main:
            net.load_state_dict(best_weights["state"])
            save_checkpoint(checkpoint_path, net, {**info, "epoch": best.epoch, "val_auc": best.val_auc})
            written = tag_file("checkpoint", checkpoint_path)  # what this run wrote, once written
            log_trained_model(cfg.model.name, f"MONAI {info['model']['net']['_target_'].rsplit('.', 1)[-1]}",
                              written["sha256"], metric_names(TRAINING, {"best_val_auc": best.val_auc,
                                                                         "best_epoch": best.epoch, "epochs": len(history)}))
            write_history(history_path, history)
            mlflow.log_artifact(str(history_path), artifact_path="training")
    except BaseException as err:
        if ranks.main:
            recorded = end_failed_run()
            if is_connection_error(err) and not server_answers(mlflow.get_tracking_uri()):
                raise tracking_lost(run.info.run_id, recorded, _what_was_kept(saved_epoch, state_path), err) from err
        raise
    if ranks.main:
        mlflow.end_run()
        state_path.unlink(missing_ok=True)  # finished: a rerun trains afresh
    log.info("training finished after %d of %d epochs%s (%.0f s this process%s): best val AUC %.4f at epoch %d; wrote %s and %s",
             len(history), settings.max_epochs, " (early stop)" if len(history) < settings.max_epochs else "",
             time.perf_counter() - started, f", resumed after epoch {resume['epoch']}" if resume else "",
             best.val_auc, best.epoch, checkpoint_path, history_path)
    return asdict(best)


def _epoch_metrics(result: dict) -> dict:
    """Return one epoch's MLflow metrics (epoch/...) from its history entry."""
    return metric_names(EPOCH, {key: result.get(key) for key in ("train_loss", "val_loss", "val_auc", "learning_rate",
                                                                 "images_per_second", "seconds")})


def _log_missing_epochs(run_id: str, history: list[dict]) -> None:
    """Log the epochs of a resumed run that its MLflow run lacks (those trained while the server was unreachable)."""
    logged = {m.step for m in mlflow.MlflowClient().get_metric_history(run_id, f"{EPOCH}/train_loss")}
    missing = [entry for entry in history if entry["epoch"] not in logged]
    for entry in missing:
        mlflow.log_metrics(_epoch_metrics(entry), step=entry["epoch"])
    if missing:
        log.info("logged epoch(s) %s to run %s: trained before the interruption, not yet recorded",
                 ", ".join(str(entry["epoch"]) for entry in missing), run_id)


def _what_was_kept(saved_epoch: list, state_path: Path) -> str:
    """Say what a rerun of an interrupted training starts from: the state saved after epoch saved_epoch[0], or nothing."""
    epoch = saved_epoch[0]
    if epoch is not None and state_path.is_file():
        return (f"Training state after epoch {epoch} is saved in {state_path}: run the stage again once the server "
                f"answers, and it resumes this run and the training after epoch {epoch}.")
    return "No training state was saved (train.resume=false or no epoch finished): a rerun trains again in a new run."


def data_facts(data: ProcessedData) -> dict:
    """Return what a model needs to know of its data: task, image shape, preprocessing and recipe (a site reports the same)."""
    return {"task": data.task.as_dict(), "image_shape": list(data.images.shape[1:]),
            "preprocessing": list(data.card["preprocessing"]), "recipe": data.card.get("recipe")}


def checkpoint_info(cfg: DictConfig, facts: dict, net_cfg: dict, arithmetic: str) -> dict:
    """Return what a checkpoint records besides the weights: network config, task, input shape, preprocessing, classes
    (`facts` as data_facts returns them)."""
    return {"model": {**OmegaConf.to_container(cfg.model, resolve=True), "net": net_cfg}, "task": facts["task"],
            "input_shape": list(facts["image_shape"]), "preprocessing": list(facts["preprocessing"]),
            "recipe": facts.get("recipe"), "classes": list(facts["task"]["classes"]), "arithmetic": arithmetic}


def run_tags(cfg: DictConfig, data: ProcessedData | None, device_info: dict, arithmetic: dict, data_sha256: str | None) -> dict:
    """Return the tags of a training run: model, data source and format, task, sites, data hash, device, arithmetic
    (without the data's when `data` is None: a coordinator that holds none tags what the sites report)."""
    tags = {"model.name": cfg.model.name, "data.source": str(cfg.data.source), "train.strategy": str(cfg.train.strategy),
            **{f"device.{k}": str(v) for k, v in device_info.items()}, **{f"numerics.{k}": v for k, v in arithmetic.items()}}
    if data is not None:
        tags.update({"data.format": data.card["source"]["type"], "study.task": data.task.type,
                     "study.sites": ",".join(data.card["sites"]), "data.sha256": data_sha256})  # what it read
    return tags


def _open_run(cfg: DictConfig, resume: dict | None, data: ProcessedData, task, device_info: dict, arithmetic: dict,
              data_sha256: str):
    """Reopen the interrupted run when resuming, otherwise start a new tagged one (named after the DVC experiment)."""
    if resume:
        open_store(cfg.mlflow.tracking_uri)
        return mlflow.start_run(run_id=resume["run_id"])
    return start_study_run(cfg, run_name=run_name(cfg.model.name),
                           extra_tags=run_tags(cfg, data, device_info, arithmetic, data_sha256))


def _settings(train_cfg: DictConfig, labels, task) -> TrainSettings:
    """Return the loop's settings from conf/train, with the class weights train.class_weighting asks for."""
    return TrainSettings.from_config(train_cfg, _class_weights(train_cfg.class_weighting, labels, task))


def _sample_weights(mode: str, labels, task) -> np.ndarray | None:
    """Return per-image drawing weights for train.sampler=balanced (each class drawn equally often), None for shuffle."""
    if mode in (None, "shuffle"):
        return None
    if mode != "balanced":
        raise ConfigError("train.sampler", f"unknown sampler '{mode}' (known: shuffle, balanced)")
    if task.multilabel:
        raise ConfigError("train.sampler", "balanced drawing needs one class per image; for multi-label use train.class_weighting=balanced")
    counts = np.bincount(labels[:, 0], minlength=len(task.classes)).astype(float)
    log.info("balanced sampler: each class drawn with equal probability (training counts %s)",
             dict(zip(task.classes, counts.astype(int).tolist())))
    return 1.0 / counts[labels[:, 0]]


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


def log_data_card(folder, name: str, data_sha256: str) -> None:
    """Attach the data card (JSON and Markdown) to the run and record the data as the run's MLflow dataset input."""
    card = Path(folder) / DATA_CARD_FILE
    log_dataset(name, folder, data_sha256)
    mlflow.log_artifact(str(card), artifact_path="data")
    mlflow.log_artifact(str(Path(folder) / DATA_CARD_MARKDOWN), artifact_path="data")


def write_history(path, rows: list[dict]) -> None:
    """Write the per-epoch history without timings (they differ run to run; MLflow and the log keep them)."""
    fields = [name for name in rows[0] if name not in TIMING_FIELDS]
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
