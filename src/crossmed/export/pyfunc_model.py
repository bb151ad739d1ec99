"""The MLflow model (pyfunc) of an export: raw image bytes in, probabilities and the decision at the operating point out.

Its predict takes a DataFrame with an `image` column of file bytes (DICOM, PNG, JPEG, NIfTI, or a .npy array
of raw pixels; base64 in a REST request) and applies the preprocessing recipe the model was validated with.
The crossmed package travels inside the model (code_paths), so `mlflow models serve` needs no checkout.
"""

import base64
import hashlib
import logging
import platform
import re
import tempfile
import uuid
from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow.models import infer_signature

from crossmed.export.shipped_package import copy_package

log = logging.getLogger("crossmed.export")
ARTIFACT = "exported_model"
REQUIREMENTS = ("torch", "monai", "numpy", "pandas", "pydicom", "nibabel", "pillow", "onnxruntime", "hydra-core")


class CrossmedImageModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper of an exported crossmed model (TorchScript runtime)."""

    def load_context(self, context):
        """Load the exported model folder shipped as an artifact."""
        from crossmed.inference.exported import ExportedModel

        self.model = ExportedModel.load(context.artifacts[ARTIFACT], runtime="torchscript")

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """Return one row per image: p_<class> columns, the predicted label and the threshold used.

        A refused or unreadable image fails the request with its row and reason only: a served model's error
        never carries a traceback or a path of the machine that serves it.
        """
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE

        from crossmed.errors import CrossmedError
        from crossmed.inference.predict import predict_prepared, prepared_bytes

        try:
            items = []
            for row, data in enumerate(model_input["image"]):
                items += prepared_bytes(self.model, base64.b64decode(data) if isinstance(data, str) else bytes(data),
                                        f"row {row}")
            results = [result for _, _, result in predict_prepared(self.model, iter(items))]
        except CrossmedError as err:
            raise MlflowException(str(err), INVALID_PARAMETER_VALUE) from None
        except Exception as err:  # anything else is ours to fix; the caller gets its kind, not our internals
            log.exception("prediction failed")
            raise MlflowException(f"prediction failed ({type(err).__name__})", INTERNAL_ERROR) from None
        return result_frame(results, list(self.model.description["classes"]))


def result_frame(results: list[dict], classes: list[str]) -> pd.DataFrame:
    """Return results as a table: file, p_<class> per class, predicted (';'-joined for multi-label), threshold."""
    rows = []
    for result in results:
        predicted = result["predicted"]
        rows.append({"image": result["file"], **{f"p_{name}": result["probabilities"][name] for name in classes},
                     "predicted": ";".join(predicted) if isinstance(predicted, list) else predicted,
                     "threshold": float(result.get("threshold", np.nan))})
    return pd.DataFrame(rows)


def save_pyfunc(folder: Path, exported_dir: Path, example_image: bytes, classes: list[str]) -> None:
    """Write the MLflow model under `folder` from the exported model folder, with its signature and an input example."""
    from crossmed.inference.exported import ExportedModel
    from crossmed.inference.predict import predict_prepared, prepared_bytes

    example = pd.DataFrame({"image": [example_image]})
    model = ExportedModel.load(exported_dir)
    output = result_frame([r for _, _, r in predict_prepared(model, iter(prepared_bytes(model, example_image, "row 0")))],
                          classes)
    with tempfile.TemporaryDirectory(prefix="crossmed-package-") as tmp:
        package = copy_package(Path(tmp) / "crossmed")
        mlflow.pyfunc.save_model(str(folder), python_model=str(Path(__file__).with_name("pyfunc_entry.py")),
                                 artifacts={ARTIFACT: str(exported_dir)}, code_paths=[str(package)],
                                 signature=infer_signature(example, output), input_example=example,
                                 pip_requirements=[f"{name}=={version(name)}" for name in REQUIREMENTS])
    make_reproducible(folder)


def make_reproducible(folder: Path) -> None:
    """Drop what differs on every save or machine from the MLflow model's files (creation time, random UUID, temporary
    and absolute paths, Python's patch version), so the same model gives the same bytes: DVC tracks this folder."""
    mlmodel_path = folder / "MLmodel"
    mlmodel = yaml.safe_load(mlmodel_path.read_text())
    mlmodel.pop("utc_time_created", None)
    mlmodel["model_uuid"] = uuid.uuid5(uuid.NAMESPACE_OID, _tree_digest(folder / "artifacts").hex()).hex  # same model, same id
    flavor = mlmodel["flavors"]["python_function"]
    for name, artifact in (flavor.get("artifacts") or {}).items():
        artifact["uri"] = artifact["path"]  # the copy inside the model folder, not the temporary folder it came from
    if "model_code_path" in flavor:
        flavor["model_code_path"] = Path(flavor["model_code_path"]).name  # MLflow loads it by its base name
    python = ".".join(platform.python_version_tuple()[:2])
    flavor["python_version"] = python
    mlmodel_path.write_text(yaml.safe_dump(mlmodel, sort_keys=True))
    for name, pattern in (("python_env.yaml", r"^python: .*$"), ("conda.yaml", r"^(\s*- python=).*$")):
        path = folder / name
        if path.is_file():
            replacement = f"python: {python}" if name == "python_env.yaml" else rf"\g<1>{python}"
            path.write_text(re.sub(pattern, replacement, path.read_text(), count=1, flags=re.MULTILINE))


def _tree_digest(folder: Path) -> bytes:
    """Return the SHA-256 over a folder's file names and contents."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.digest()
