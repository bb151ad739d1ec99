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
from crossmed.evaluation.metrics import binary_metrics, choose_threshold
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
    net = build_network(checkpoint["model"]["net"])
    net.load_state_dict(checkpoint["state_dict"])
    return net.to(device).eval(), checkpoint


def evaluate_study(cfg: DictConfig, checkpoint_path: str | Path, run_reference: str | Path, metrics_path: str | Path,
                   out_dir: str | Path) -> dict:
    """Write metrics.json, ROC and prediction tables, PNG plots and the operating point; log them to the training run."""
    out_dir = Path(out_dir)
    device = resolve_device(cfg.device)
    net, checkpoint = load_trained_network(checkpoint_path, device)
    data = ProcessedData.load(cfg.paths.processed)
    val_images, val_labels, _ = data.split("val")
    val_probabilities = predict_probabilities(net, val_images, device)
    threshold = choose_threshold(cfg.evaluate.operating_point, val_labels, val_probabilities, cfg.evaluate.fixed_threshold)
    log.info("operating point %.4f (%s on %d validation images)", threshold, cfg.evaluate.operating_point, len(val_labels))
    metrics, curves, predictions = {}, {}, []
    classes = list(cfg.study.classes)
    for name, split in EVALUATION_SETS.items():
        images, labels, rows = data.split(split)
        if len(images) == 0:
            continue
        probabilities = predict_probabilities(net, images, device)
        metrics[name] = binary_metrics(labels, probabilities, threshold)
        predicted = (probabilities >= threshold).astype(int)
        points = roc_points(labels, probabilities)
        write_csv(points, out_dir / f"roc_{name}.csv")
        curves[name] = (points, metrics[name]["auc"])
        predictions.append(pd.DataFrame({"set": name, "site": rows["site"].to_numpy(), "patient_id": rows["patient_id"].to_numpy(),
                                         "sop_instance_uid": rows["sop_instance_uid"].to_numpy(), "actual": labels,
                                         "predicted": predicted, "probability": np.round(probabilities, 6)}))
        confusion_figure(labels, predicted, classes, name.replace("_", " "), out_dir / f"confusion_{name}.png")
        log.info("%s: %d images from %s: %s", name, len(labels), sorted(rows["site"].unique()), metrics[name])
    for table in predictions:
        write_csv(table, out_dir / f"predictions_{table['set'].iloc[0]}.csv")
    roc_figure(curves, out_dir / "roc.png")
    operating_point = {"method": cfg.evaluate.operating_point, "threshold": threshold, "chosen_on": "val",
                       "val_images": int(len(val_labels)), "checkpoint_epoch": int(checkpoint.get("epoch", -1))}
    write_json_atomic(out_dir / "operating_point.json", operating_point)
    write_json_atomic(metrics_path, metrics)
    with resume_run(run_reference):
        mlflow.log_metrics({f"{name}_{key}": value for name, values in metrics.items() for key, value in values.items()})
        mlflow.log_metric("operating_threshold", threshold)
        mlflow.log_artifacts(str(out_dir), artifact_path="evaluation")
        mlflow.log_artifact(str(metrics_path), artifact_path="evaluation")
    log.info("wrote %s and plots under %s", metrics_path, out_dir)
    return metrics
