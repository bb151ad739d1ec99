"""Stage `evaluate`: internal and external test metrics at the validation operating point.

Reads paths.checkpoint, paths.processed and paths.training_run; writes paths.metrics and paths.evaluation (with
paths.operating_point and paths.all_metrics inside it) and logs them to the training run.
"""

import json
import logging
import re
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from crossmed.data.processed import ProcessedData
from crossmed.devices import resolve_device
from crossmed.errors import ConfigError
from crossmed.data.task import Task
from crossmed.evaluation.bootstrap import BootstrapSettings
from crossmed.evaluation.calibration import TemperatureScaling, fit_temperature
from crossmed.evaluation.comparison import compare_with_reference, reference_predictions
from crossmed.evaluation.metrics import choose_threshold, task_metrics
from crossmed.evaluation.set_report import SetReport, flat_intervals
from crossmed.evaluation.plots import confusion_figure, write_csv
from crossmed.evaluation.pointing import finding_positions, pointing_game
from crossmed.model.saliency import grad_cam, write_gradcam
from crossmed.files import atomic_directory, write_json_atomic
from crossmed.study_paths import within
from crossmed.reproducibility import SCOPE, in_effect
from crossmed.tracking import metric_names, open_store, resume_run, run_model_id
from crossmed.model.checkpoint import load_trained_network
from crossmed.model.probabilities import predict_probabilities

log = logging.getLogger("crossmed.evaluate")
EVALUATION_SETS = {"internal_test": "test", "external_test": "external_test"}


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


def bootstrap_settings(cfg: DictConfig) -> BootstrapSettings:
    """Return evaluate.bootstrap as settings."""
    b = cfg.evaluate.bootstrap
    return BootstrapSettings(b.resamples, b.seed, b.confidence, b.min_per_class)


def _temperature(cfg: DictConfig, task: Task, val_probabilities: np.ndarray, val_labels: np.ndarray) -> TemperatureScaling | None:
    """Return temperature scaling fitted on validation when evaluate.temperature_scaling is on and it applies."""
    return fit_temperature(task, val_probabilities, val_labels) if cfg.evaluate.temperature_scaling else None


def _kappa(task: Task, labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """Return the quadratic-weighted kappa of an ordinal task's most probable grade (point estimate), else nothing."""
    if task.type != "ordinal":
        return {}
    return {"quadratic_kappa": task_metrics(task, labels, probabilities, 0.5)["quadratic_kappa"]}


def comparison_references(value) -> dict[str, str]:
    """Return evaluate.compare_with as {label: reference}: one run ID or folder is labelled 'reference'; a mapping
    names each reference (labels become metric names: letters, digits and '_')."""
    if not value:
        return {}
    if isinstance(value, str):
        return {"reference": value}
    if not OmegaConf.is_dict(value) and not isinstance(value, dict):
        raise ConfigError("evaluate.compare_with", "a run ID or evaluation folder, or a mapping {label: run ID or folder}")
    references = {str(k): str(v) for k, v in value.items()}
    bad = [label for label in references if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,39}", label)]
    if bad:
        raise ConfigError("evaluate.compare_with", f"label {bad[0]!r}: letters, digits and '_', starting with a letter")
    return references


def _compare(cfg: DictConfig, task: Task, predictions: list[pd.DataFrame]) -> dict[str, dict]:
    """Return DeLong's test against each model of evaluate.compare_with, per test set: {label: {set: result}}."""
    references = comparison_references(cfg.evaluate.get("compare_with"))
    if not references:
        return {}
    if task.type != "binary":
        raise ConfigError("evaluate.compare_with", f"DeLong's test compares binary AUCs; this task is {task.type}")
    open_store(cfg.mlflow.tracking_uri)  # a run ID is looked up in the study's store
    out = {}
    for label, reference in references.items():
        out[label] = {}
        for table in predictions:
            name = table["set"].iloc[0]
            theirs, source = reference_predictions(reference, name)
            out[label][name] = compare_with_reference(table, theirs, source, name)
    return out


def run(cfg: DictConfig) -> dict:
    """Write metrics.json, per-set tables and figures, intervals, calibration and the operating point; log them to the run.

    The evaluation folder is built aside and replaces the old one only when everything succeeded.
    """
    out_dir, checkpoint_path, metrics_path = Path(cfg.paths.evaluation), Path(cfg.paths.checkpoint), Path(cfg.paths.metrics)
    with atomic_directory(out_dir) as work:
        metrics, threshold = _evaluate(cfg, checkpoint_path, work)
        write_json_atomic(work / within(cfg, "all_metrics", "evaluation"), metrics)
    write_json_atomic(metrics_path, headline_metrics(metrics))
    with resume_run(cfg.paths.training_run, checkpoint_path, cfg.mlflow.tracking_uri):
        model_id = run_model_id()  # the figures belong to the trained model too (its page in the Models tab)
        for name, values in metrics.items():  # one chart group per test set (and per comparison) in the MLflow UI
            mlflow.log_metrics(metric_names(name, values), model_id=model_id)
        mlflow.log_metrics(metric_names("validation", {"operating_threshold": threshold}), model_id=model_id)
        if (out_dir / "pointing_game.json").is_file():
            pointing = json.loads((out_dir / "pointing_game.json").read_text())
            for name, result in pointing.items():
                mlflow.log_metrics(metric_names(name, {"pointing_game_rate": result["rate"]}), model_id=model_id)
        mlflow.log_artifacts(str(out_dir), artifact_path="evaluation")
        mlflow.log_artifact(str(metrics_path), artifact_path="evaluation")
    log.info("wrote %s and plots under %s", metrics_path, out_dir)
    return metrics


HEADLINE_BINARY = ("auc", "sensitivity", "specificity", "ppv", "npv", "brier", "ece")
HEADLINE_OTHER = ("auc", "balanced_accuracy", "accuracy", "quadratic_kappa", "mean_absolute_error", "brier", "ece")


def headline_metrics(metrics: dict) -> dict:
    """Return metrics.json's content: per test set the headline metrics with their intervals, the external set with the
    AUC gap (internal minus external); comparisons with a reference model as they are."""
    out = {}
    for name, values in metrics.items():
        if name == "external_gap" or "_vs_" in name:
            continue
        keys = HEADLINE_BINARY if "sensitivity" in values else HEADLINE_OTHER
        out[name] = {k: v for k, v in values.items() if any(k == m or k in (f"{m}_ci_low", f"{m}_ci_high") for m in keys)}
    gap = metrics.get("external_gap") or {}
    if "external_test" in out and "auc" in gap:
        out["external_test"] |= {f"auc_gap{suffix}": gap[f"auc{suffix}"] for suffix in ("", "_ci_low", "_ci_high")}
    return out | {name: values for name, values in metrics.items() if "_vs_" in name}


def _evaluate(cfg: DictConfig, checkpoint_path: str | Path, out_dir: Path) -> tuple[dict, float]:
    """Compute everything the evaluate stage reports, writing its files under `out_dir`; return (metrics, threshold)."""
    device = resolve_device(cfg.device)
    arithmetic = in_effect(cfg)
    net, checkpoint = load_trained_network(checkpoint_path, device)
    data = ProcessedData.load(cfg.paths.processed)
    task = Task.from_dict(checkpoint["task"])
    val = data.split("val")
    val_probabilities = predict_probabilities(net, val.images, device, task)
    threshold = _operating_threshold(cfg, task, val.labels, val_probabilities)
    report = SetReport(task, out_dir, threshold, bootstrap_settings(cfg), list(data.card.get("subgroups", [])),
                       _temperature(cfg, task, val_probabilities, val.labels))
    metrics, predictions, pointing = {}, [], {}
    for name, split in EVALUATION_SETS.items():
        part = data.split(split)
        if len(part.labels) == 0:
            continue
        probabilities = predict_probabilities(net, part.images, device, task)
        metrics[name] = report.add(name, part.rows, part.labels, probabilities) | _kappa(task, part.labels, probabilities)
        table = _prediction_table(name, part.rows, part.labels, probabilities, task, threshold)
        predictions.append(table)
        if task.multilabel:
            log.info("Grad-CAM skipped for %s: overlays are drawn for single-label tasks", name)
        else:
            write_gradcam(net, part.images, table, list(task.classes), cfg.evaluate.gradcam.cases,
                          str(cfg.evaluate.gradcam.target_layer), out_dir / "gradcam", device)
            confusion_figure(table["actual"].to_numpy(), table["predicted"].to_numpy(), list(task.classes),
                             name.replace("_", " "), out_dir / f"confusion_{name}.png")
            findings = finding_positions(part.rows)
            if findings is not None and task.type == "binary" and data.images.ndim == 4:
                cam, layer = grad_cam(net, str(cfg.evaluate.gradcam.target_layer), tuple(data.images.shape[1:]))
                try:
                    pointing[name] = pointing_game(cam, part.images, table, findings, 1, device) | {"layer": layer}
                except Exception as err:  # e.g. a transformer whose blocks give no feature map (as in write_gradcam)
                    log.warning("pointing game skipped: layer '%s' of %s gives no feature map to weight (%s)", layer,
                                type(net).__name__, err)
        log.info("%s: %d images from %s: %s", name, len(part.labels), sorted(part.rows["site"].unique()),
                 {k: v for k, v in metrics[name].items() if not k.startswith("auc_") and "_ci_" not in k})
    gap = report.external_gap()
    if gap is not None:
        metrics["external_gap"] = flat_intervals(gap)
    report.write()
    comparisons = _compare(cfg, task, predictions)
    for label, sets in comparisons.items():
        for name, result in sets.items():
            metrics[f"{name}_vs_{label}"] = {"auc_difference": result["difference"], "p_value": round(result["p_value"], 6)}
    if comparisons:
        write_json_atomic(out_dir / "comparison.json", {"test": "DeLong, paired, two-sided",
                                                        "references": {label: {"sets": sets} for label, sets in comparisons.items()}})
    for table in predictions:
        write_csv(table, out_dir / f"predictions_{table['set'].iloc[0]}.csv")
    operating_point = {"method": cfg.evaluate.operating_point if task.type == "binary" else
                       ("threshold 0.5 per label" if task.multilabel else "most probable class"),
                       "threshold": threshold, "chosen_on": "val", "val_images": int(len(val.labels)),
                       "checkpoint_epoch": int(checkpoint.get("epoch", -1))}
    if task.type == "binary" and cfg.evaluate.operating_point in ("sensitivity", "specificity"):
        operating_point["target"] = cfg.evaluate.target
    write_json_atomic(out_dir / within(cfg, "operating_point", "evaluation"), operating_point)
    if pointing:
        write_json_atomic(out_dir / "pointing_game.json", pointing)
    trained = checkpoint.get("arithmetic", "unknown")
    write_json_atomic(out_dir / "reproducibility.json", {"training": trained, "evaluation": arithmetic,
                                                          "scope": SCOPE.get(trained, "not recorded by this checkpoint")})
    return metrics, threshold
