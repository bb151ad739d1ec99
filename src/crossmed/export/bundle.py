"""A MONAI bundle of the exported model: metadata that MONAI's schema accepts, an inference config, the TorchScript file.

    bundle/configs/metadata.json    checked with `python -m monai.bundle verify_metadata`
    bundle/configs/inference.json   `python -m monai.bundle run --config_file bundle/configs/inference.json --image F`
    bundle/models/model.ts, model.json
    bundle/scripts/                 crossmed's preprocessing and prediction, so the answers equal `crossmed predict`
    bundle/docs/README.md, docs/example_input.npy
"""

import shutil
from importlib.metadata import version
from pathlib import Path

from crossmed.export.shipped_package import copy_package
from crossmed.files import write_bytes_atomic, write_json_atomic, write_text_atomic

SCHEMA = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
SCRIPTS_INIT = '''"""crossmed, shipped inside this bundle: importing `scripts` puts it on the import path."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def load_model():
    """Return the bundle's exported model (TorchScript runtime)."""
    from crossmed.inference.exported import ExportedModel

    return ExportedModel.load(HERE.parent / "models")


def example_image() -> str:
    """Return the path of the input example shipped in docs/."""
    return str(HERE.parent / "docs" / "example_input.npy")


def predict(model, image, saliency_dir=None) -> list:
    """Return crossmed's JSON-ready results for one image file (or a list of files)."""
    from crossmed.inference.predict import predict_files

    return predict_files(model, [image] if isinstance(image, str) else list(image), saliency_dir)
'''
INFERENCE = {
    "imports": ["$import json"],
    "bundle_root": ".",
    "crossmed": "$__import__('scripts')",  # the bundle's scripts/ (MONAI puts the bundle root on the path for `run`)
    "image": "$@crossmed.example_image()",
    "saliency_dir": None,
    "model": "$@crossmed.load_model()",
    "results": "$@crossmed.predict(@model, @image, @saliency_dir)",
    "run": ["$print(json.dumps(@results, indent=2))"],
}


def bundle_metadata(description: dict) -> dict:
    """Return configs/metadata.json for MONAI's bundle schema from the model description."""
    recipe, task, classes = description["recipe"], description["task"], list(description["classes"])
    spatial = [recipe["image_size"]] * recipe["spatial_dims"]
    metrics = {f"{name}_{key}": value for name, values in description["metrics"].items() if name != "external_gap"
               for key, value in values.items() if key in ("auc", "sensitivity", "specificity", "accuracy") and value is not None}
    versions = description["package_versions"]
    return {
        "schema": SCHEMA, "version": "0.1.0", "changelog": {"0.1.0": "exported by crossmed"},
        "monai_version": versions.get("monai", version("monai")), "pytorch_version": versions.get("torch", version("torch")),
        "numpy_version": versions.get("numpy", version("numpy")),
        "required_packages_version": {name: versions[name] for name in ("pydicom", "nibabel", "pillow", "hydra-core")
                                      if name in versions},
        "task": f"{task['type']} classification: {', '.join(classes)}",
        "description": f"{description['name']}: preprocessing recipe {recipe['kind']} ({'; '.join(description['preprocessing'])}). "
                       f"Decision at the saved operating point {description['operating_point'].get('threshold')}.",
        "authors": "crossmed study team", "copyright": "Copyright the contributing sites of the study",
        "data_source": f"crossmed study; processed data SHA-256 {description['training']['data_sha256']}",
        "data_type": "dicom, nifti, png, jpeg or numpy array", "image_classes": f"{recipe['channels']} channel(s), prepared by the recipe",
        "label_classes": ", ".join(f"{i}: {name}" for i, name in enumerate(classes)),
        "pred_classes": ", ".join(f"{i}: {name}" for i, name in enumerate(classes)),
        "eval_metrics": metrics, "intended_use": "See the model card (model_card.md) shipped with this export.",
        "references": ["crossmed validation report: experiments/reports/validation_report.html"],
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "magnitude", "modality": "any", "num_channels": recipe["channels"],
                                 "spatial_shape": spatial, "dtype": "float32", "value_range": [],
                                 "is_patch_data": False, "channel_def": {str(i): f"channel {i}" for i in range(recipe["channels"])}}},
            "outputs": {"pred": {"type": "probabilities", "format": "classes", "num_channels": len(classes), "spatial_shape": [1],
                                 "dtype": "float32", "value_range": [0, 1], "is_patch_data": False,
                                 "channel_def": {str(i): name for i, name in enumerate(classes)}}}},
    }


def write_bundle(folder: Path, portable: Path, description: dict, example_input: bytes) -> None:
    """Write the bundle under `folder` from the portable model folder (model.json, model.ts)."""
    write_json_atomic(folder / "configs" / "metadata.json", bundle_metadata(description))
    write_json_atomic(folder / "configs" / "inference.json", INFERENCE)
    (folder / "models").mkdir(parents=True, exist_ok=True)
    shutil.copy2(portable / "model.ts", folder / "models" / "model.ts")
    write_json_atomic(folder / "models" / "model.json", description | {"files": {"torchscript": "model.ts"}})
    copy_package(folder / "scripts" / "crossmed")
    write_text_atomic(folder / "scripts" / "__init__.py", SCRIPTS_INIT)
    write_bytes_atomic(folder / "docs" / "example_input.npy", example_input)
    write_text_atomic(folder / "docs" / "README.md", f"# {description['name']}\n\nPredict an image (DICOM must be de-identified):\n\n"
                      "    python -m monai.bundle run --config_file configs/inference.json --image IMAGE\n\n"
                      "Without --image it predicts docs/example_input.npy. Check the metadata:\n\n"
                      "    python -m monai.bundle verify_metadata --meta_file configs/metadata.json --filepath SCHEMA.json\n")
