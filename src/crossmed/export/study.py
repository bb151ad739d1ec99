"""The export stage as a library call: TorchScript model plus its JSON description, parity-checked."""

import json
import logging
from pathlib import Path

import mlflow
import numpy as np
import torch
from omegaconf import DictConfig

from crossmed.data.processed import ProcessedData
from crossmed.errors import ConfigError, InputError
from crossmed.evaluation.study import load_trained_network
from crossmed.export.description import model_description
from crossmed.export.torchscript import check_parity, export_torchscript
from crossmed.files import write_json_atomic
from crossmed.tracking import resume_run

log = logging.getLogger("crossmed.export")
KNOWN_FORMATS = {"torchscript"}


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise InputError(path, "missing; run the evaluate stage first")
    return json.loads(path.read_text())


def export_study(cfg: DictConfig, checkpoint_path: str | Path, run_reference: str | Path, out_dir: str | Path) -> dict:
    """Write models/model.ts and models/model.json; log both to the training run; return the description."""
    unknown = set(cfg.export.formats) - KNOWN_FORMATS
    if unknown:
        raise ConfigError("export.formats", f"unknown format(s) {sorted(unknown)} (known: {sorted(KNOWN_FORMATS)})")
    out_dir = Path(out_dir)
    net, checkpoint = load_trained_network(checkpoint_path, torch.device("cpu"))
    data = ProcessedData.load(cfg.paths.processed)
    sample = np.array(data.images[: min(len(data.images), 64)])  # a copy, not a read-only view of the memory map
    multilabel = checkpoint["task"]["type"] == "multilabel"
    model_path = out_dir / "model.ts"
    export_torchscript(net, sample, model_path, multilabel)
    difference = check_parity(net, model_path, sample, float(cfg.export.parity_atol), multilabel)
    log.info("TorchScript parity on %d images: max |difference| %.2e (tolerance %.0e)", len(sample), difference, cfg.export.parity_atol)
    experiments = Path(cfg.paths.experiments)
    reference = _read_json(Path(run_reference))
    description = model_description(
        name=f"{cfg.study.name}-{checkpoint['model']['name']}", model_file=model_path.name,
        input_shape=list(checkpoint["input_shape"]), preprocessing=list(checkpoint["preprocessing"]), task=checkpoint["task"],
        operating_point=_read_json(experiments / "evaluation" / "operating_point.json"),
        metrics=_read_json(experiments / "metrics.json"),
        training={"mlflow_run_id": reference["run_id"], "epoch": checkpoint.get("epoch"), "val_auc": checkpoint.get("val_auc"),
                  "network": checkpoint["model"]["net"]},
        parity={"images": int(len(sample)), "max_abs_difference": difference, "tolerance": float(cfg.export.parity_atol)})
    write_json_atomic(out_dir / "model.json", description)
    with resume_run(run_reference):
        mlflow.log_artifact(str(model_path), artifact_path="model")
        mlflow.log_artifact(str(out_dir / "model.json"), artifact_path="model")
        mlflow.log_metric("export_parity_max_abs_difference", difference)
    log.info("wrote %s and %s", model_path, out_dir / "model.json")
    return description
