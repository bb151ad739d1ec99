"""The evaluate stage as a library call: internal and external test metrics at the validation operating point."""

import logging
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from crossmed.data.processed import ProcessedData
from crossmed.devices import resolve_device
from crossmed.data.task import Task
from crossmed.evaluation.metrics import choose_threshold, task_metrics
from crossmed.evaluation.plots import confusion_figure, roc_figure, roc_points, write_csv
from crossmed.files import write_json_atomic
from crossmed.networks import build_network
from crossmed.tracking import resume_run
from crossmed.training.checkpoint import load_checkpoint
from crossmed.training.inference import predict_probabilities

log = logging.getLogger("crossmed.evaluate")
EVALUATION_SETS = {"internal_test": "test", "external_test": "external_test"}


def load_trained_network(checkpoint_path: str | Path, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """Return the checkpoint's network in eval mode on `device`, and the checkpoint."""
    checkpoint = load_checkpoint(checkpoint_path)
    net = build_network(checkpoint["model"]["net"])  # the net config as trained: channels and classes from the data
    net.load_state_dict(checkpoint["state_dict"])
    return net.to(device).eval(), checkpoint


def _operating_threshold(cfg: DictConfig, task: Task, labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Return the binary threshold chosen on validation (0.5 per label for multi-label; unused for classes)."""
    if task.type != "binary":
        return 0.5
    threshold = choose_threshold(cfg.evaluate.operating_point, labels[:, 0], probabilities[:, 1], cfg.evaluate.fixed_threshold,
                                 cfg.evaluate.target)
    log.info("operating point %.4f (%s%s on %d validation images)", threshold, cfg.evaluate.operating_point,
             f" {cfg.evaluate.target}" if cfg.evaluate.operating_point in ("sensitivity", "specificity") else "", len(labels))
    return threshold


def _prediction_table(name: str, rows: pd.DataFrame, labels: np.ndarray, probabilities: np.ndarray, task: Task,
                      threshold: float) -> pd.DataFrame:
    """Return one row per image: pseudonymous IDs, actual and predicted label(s) and probabilities."""
    table = pd.DataFrame({"set": name, "site": rows["site"].to_numpy(), "patient_id": rows["patient_id"].to_numpy(),
                          "image_id": rows["image_id"].to_numpy()})
    if task.type == "binary":
        table["actual"], table["predicted"] = labels[:, 0], (probabilities[:, 1] >= threshold).astype(int)
        table["probability"] = np.round(probabilities[:, 1], 6)
        return table
    if not task.multilabel:
        table["actual"], table["predicted"] = labels[:, 0], probabilities.argmax(axis=1)
    for i in range(len(task.classes)):
        if task.multilabel:
            table[f"actual_{i}"] = labels[:, i]
        table[f"p_{i}"] = np.round(probabilities[:, i], 6)
    return table


def evaluate_study(cfg: DictConfig, checkpoint_path: str | Path, run_reference: str | Path, metrics_path: str | Path,
                   out_dir: str | Path) -> dict:
    """Write metrics.json, ROC and prediction tables, PNG plots and the operating point; log them to the training run."""
    out_dir = Path(out_dir)
    device = resolve_device(cfg.device)
    net, checkpoint = load_trained_network(checkpoint_path, device)
    data = ProcessedData.load(cfg.paths.processed)
    task = Task.from_dict(checkpoint["task"])
    val = data.split("val")
    val_probabilities = predict_probabilities(net, val.images, device, task)
    threshold = _operating_threshold(cfg, task, val.labels, val_probabilities)
    metrics, curves, predictions = {}, {}, []
    for name, split in EVALUATION_SETS.items():
        part = data.split(split)
        if len(part.labels) == 0:
            continue
        probabilities = predict_probabilities(net, part.images, device, task)
        metrics[name] = task_metrics(task, part.labels, probabilities, threshold)
        table = _prediction_table(name, part.rows, part.labels, probabilities, task, threshold)
        predictions.append(table)
        if task.type == "binary":
            points = roc_points(part.labels[:, 0], probabilities[:, 1])
            write_csv(points, out_dir / f"roc_{name}.csv")
            curves[name] = (points, metrics[name]["auc"])
        if not task.multilabel:
            confusion_figure(table["actual"].to_numpy(), table["predicted"].to_numpy(), list(task.classes),
                             name.replace("_", " "), out_dir / f"confusion_{name}.png")
        log.info("%s: %d images from %s: %s", name, len(part.labels), sorted(part.rows["site"].unique()),
                 {k: v for k, v in metrics[name].items() if not k.startswith("auc_")})
    for table in predictions:
        write_csv(table, out_dir / f"predictions_{table['set'].iloc[0]}.csv")
    if curves:
        roc_figure(curves, out_dir / "roc.png")
    operating_point = {"method": cfg.evaluate.operating_point if task.type == "binary" else
                       ("threshold 0.5 per label" if task.multilabel else "most probable class"),
                       "threshold": threshold, "chosen_on": "val", "val_images": int(len(val.labels)),
                       "checkpoint_epoch": int(checkpoint.get("epoch", -1))}
    write_json_atomic(out_dir / "operating_point.json", operating_point)
    write_json_atomic(metrics_path, metrics)
    with resume_run(run_reference):
        mlflow.log_metrics({f"{name}_{key}": value for name, values in metrics.items() for key, value in values.items()})
        mlflow.log_metric("operating_threshold", threshold)
        mlflow.log_artifacts(str(out_dir), artifact_path="evaluation")
        mlflow.log_artifact(str(metrics_path), artifact_path="evaluation")
    log.info("wrote %s and plots under %s", metrics_path, out_dir)
    return metrics
