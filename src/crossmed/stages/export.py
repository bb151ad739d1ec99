"""Stage `export`: every artifact under paths.export (models/export/), parity-checked, logged and registered.

Reads paths.checkpoint, paths.processed, paths.evaluation (paths.operating_point, paths.all_metrics) and
paths.training_run; writes paths.export:

    models/export/model/          model.json (inputs, recipe, classes, threshold), model.ts, model.onnx: `crossmed predict`
    models/export/mlflow_model/   the MLflow pyfunc model (image bytes in), also registered in the Model Registry
    models/export/bundle/         a MONAI bundle (configs/metadata.json, configs/inference.json, models/model.ts)
    models/export/model_card.md   the model card, and its self-contained HTML twin
"""

import io
import logging
from pathlib import Path

import mlflow
import numpy as np
import torch
from omegaconf import DictConfig

from crossmed.data.processed import DATA_CARD_FILE, ProcessedData, data_fingerprint
from crossmed.errors import ConfigError
from crossmed.reporting.documents import read_json
from crossmed.model.checkpoint import load_trained_network
from crossmed.export.bundle import write_bundle
from crossmed.export.description import model_description
from crossmed.reporting.model_card import write_model_card
from crossmed.export.onnx_export import check_onnx_parity, export_onnx
from crossmed.export.pyfunc_model import save_pyfunc
from crossmed.export.registry import register_model
from crossmed.export.torchscript import check_parity, export_torchscript
from crossmed.files import atomic_directory, write_json_atomic
from crossmed.data.recipe import Recipe, example_pixels
from crossmed.model.saliency import saliency_layer
from crossmed.reproducibility import in_effect
from crossmed.tracking import EXPORT, file_digests, metric_names, resume_run, run_model_id

log = logging.getLogger("crossmed.export")
KNOWN_FORMATS = ("torchscript", "onnx", "mlflow", "bundle")
PORTABLE, MLFLOW_MODEL, BUNDLE = "model", "mlflow_model", "bundle"


def _formats(cfg: DictConfig) -> list[str]:
    """Return export.formats checked: known names, TorchScript always (the other artifacts are built on it)."""
    formats = list(cfg.export.formats)
    unknown = sorted(set(formats) - set(KNOWN_FORMATS))
    if unknown:
        raise ConfigError("export.formats", f"unknown format(s) {unknown} (known: {', '.join(KNOWN_FORMATS)})")
    if "torchscript" not in formats:
        raise ConfigError("export.formats", "torchscript is needed: the MLflow model, the bundle and Grad-CAM use it")
    return formats


def _npy_bytes(array: np.ndarray) -> bytes:
    """Return an array as .npy file bytes."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def run(cfg: DictConfig) -> dict:
    """Write models/export/ (portable model, MLflow model, MONAI bundle, model card); log and register them; return model.json."""
    formats = _formats(cfg)
    in_effect(cfg, on_cpu=True)  # the parity checks compute with PyTorch on the CPU
    out_dir, checkpoint_path = Path(cfg.paths.export), Path(cfg.paths.checkpoint)
    net, checkpoint = load_trained_network(checkpoint_path, torch.device("cpu"))
    recipe = Recipe.from_dict(checkpoint.get("recipe"), str(checkpoint_path))
    data = ProcessedData.load(cfg.paths.processed)
    val = data.split("val") if len(data.split("val").labels) else data.split("train")
    images = np.array(val.images[: cfg.export.parity_images])  # a copy, not a read-only view of the memory map
    multilabel = checkpoint["task"]["type"] == "multilabel"
    with atomic_directory(out_dir) as work:
        portable = work / PORTABLE
        files, parity, differences = {"torchscript": "model.ts"}, {}, {}
        export_torchscript(net, images, portable / "model.ts", multilabel)
        differences["torchscript"] = check_parity(net, portable / "model.ts", images, cfg.export.parity_atol, multilabel)
        parity["torchscript"] = _parity("TorchScript", differences["torchscript"], len(images), cfg.export.parity_atol)
        if "onnx" in formats:
            export_onnx(net, images, portable / "model.onnx", cfg.export.onnx_opset, multilabel)
            files["onnx"] = "model.onnx"
            differences["onnx"] = check_onnx_parity(net, portable / "model.onnx", images, cfg.export.onnx_parity_atol,
                                                    multilabel)
            parity["onnx"] = _parity("ONNX (onnxruntime)", differences["onnx"], len(images), cfg.export.onnx_parity_atol)
        description = model_description(
            name=f"{cfg.study.name}-{checkpoint['model']['name']}", files=files, recipe=recipe.as_dict(),
            input_shape=list(checkpoint["input_shape"]), preprocessing=list(checkpoint["preprocessing"]), task=checkpoint["task"],
            operating_point=read_json(Path(cfg.paths.operating_point)), metrics=read_json(Path(cfg.paths.all_metrics)),
            training={"checkpoint_sha256": file_digests(checkpoint_path)["sha256"], "epoch": checkpoint.get("epoch"),
                      "arithmetic": checkpoint.get("arithmetic", "unknown"),
                      "val_auc": checkpoint.get("val_auc"), "network": checkpoint["model"]["net"],
                      "data_sha256": data_fingerprint(cfg.paths.processed),
                      **({"federated": checkpoint["federated"]} if "federated" in checkpoint else {})},
            parity=parity)
        if checkpoint["task"]["type"] != "multilabel":  # predict --saliency draws the layer the evaluation validated
            layer = str(cfg.evaluate.gradcam.target_layer)
            description["gradcam_layer"] = saliency_layer(net, tuple(checkpoint["input_shape"])) if layer == "auto" else layer
        write_json_atomic(portable / "model.json", description)
        example = _npy_bytes(example_pixels(recipe, images[0]))
        if "mlflow" in formats:
            save_pyfunc(work / MLFLOW_MODEL, portable, example, list(description["classes"]))
        if "bundle" in formats:
            write_bundle(work / BUNDLE, portable, description, example)
        write_model_card(cfg, description, Path(cfg.paths.evaluation), Path(cfg.paths.processed) / DATA_CARD_FILE,
                         work / "model_card.md")
    with resume_run(cfg.paths.training_run, checkpoint_path, cfg.mlflow.tracking_uri) as run:
        mlflow.log_artifacts(str(out_dir / PORTABLE), artifact_path="model")
        for name in ("model_card.md", "model_card.html"):
            mlflow.log_artifact(str(out_dir / name), artifact_path="model")
        model_id = run_model_id()
        mlflow.log_metrics(metric_names(EXPORT, {f"parity_{runtime}": difference for runtime, difference in differences.items()}),
                           model_id=model_id)
        if "mlflow" in formats:
            mlflow.log_artifacts(str(out_dir / MLFLOW_MODEL), artifact_path=MLFLOW_MODEL)
            if model_id is not None:  # the logged model (Models tab) holds the servable files too
                mlflow.MlflowClient().log_model_artifacts(model_id, str(out_dir / MLFLOW_MODEL))
            if cfg.export.register:
                source = f"models:/{model_id}" if model_id is not None else f"runs:/{run.info.run_id}/{MLFLOW_MODEL}"
                register_model(run.info.run_id, source, str(cfg.export.registered_name), description)
        mlflow.set_tag("model_json.sha256", file_digests(out_dir / PORTABLE / "model.json")["sha256"])
    log.info("wrote %s: %s", out_dir, ", ".join(sorted(p.name for p in out_dir.iterdir())))
    return description


def _parity(runtime: str, difference: float, images: int, tolerance: float) -> dict:
    """Log one runtime's passed parity check; return what model.json records (the exact difference varies by CPU: MLflow only)."""
    log.info("%s parity on %d validation images: max |difference| %.2e (tolerance %.0e)", runtime, images, difference, tolerance)
    return {"images": images, "tolerance": tolerance, "passed": True}
