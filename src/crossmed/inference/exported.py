"""An exported model folder (model.json with model.ts and model.onnx) loaded for prediction, without the training config."""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crossmed.errors import InputError
from crossmed.data.recipe import Recipe
from crossmed.inference.inputs import model_description_path

RUNTIMES = ("torchscript", "onnx")


def decide(description: dict, probabilities: np.ndarray) -> dict:
    """Return one image's result: probability per class and the label(s) at the saved operating point."""
    task, classes = description["task"], list(description["classes"])
    result = {"probabilities": {name: round(float(p), 6) for name, p in zip(classes, probabilities)}}
    if task["type"] == "binary":
        threshold = float(description["operating_point"]["threshold"])
        result |= {"predicted": classes[int(probabilities[1] >= threshold)], "threshold": threshold}
    elif task["type"] == "multilabel":
        threshold = float(description["operating_point"].get("threshold", 0.5))
        result |= {"predicted": [name for name, p in zip(classes, probabilities) if p >= threshold], "threshold": threshold}
    else:
        result["predicted"] = classes[int(np.argmax(probabilities))]
    return result


@dataclass
class ExportedModel:
    """The description, preprocessing recipe and a runtime session of an exported model."""

    folder: Path
    description: dict
    recipe: Recipe
    runtime: str
    _session: object = field(default=None, repr=False)

    @classmethod
    def load(cls, path: str | Path, runtime: str = "torchscript") -> "ExportedModel":
        """Return the model of an export folder (or its model.json); raise InputError naming what is missing."""
        description_path = model_description_path(path)
        description = json.loads(description_path.read_text())
        if runtime not in RUNTIMES:
            raise InputError(description_path, f"unknown runtime '{runtime}' (known: {', '.join(RUNTIMES)})")
        recipe = Recipe.from_dict(description.get("recipe"), str(description_path))
        model = cls(description_path.parent, description, recipe, runtime)
        model._session = model._open()
        return model

    def artifact(self, runtime: str) -> Path:
        """Return the path of the runtime's model file; raise InputError when the export did not write it."""
        name = self.description.get("files", {}).get(runtime)
        if not name or not (self.folder / name).is_file():
            raise InputError(self.folder / (name or f"model for {runtime}"), f"missing: export with '{runtime}' in export.formats")
        return self.folder / name

    def _open(self):
        """Return the TorchScript module or the onnxruntime session."""
        path = self.artifact(self.runtime)
        if self.runtime == "onnx":
            import onnxruntime

            return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        import torch

        return torch.jit.load(str(path), map_location="cpu").eval()

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Return (N, outputs) probabilities for a (N, *input shape) float32 batch of prepared images."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.runtime == "onnx":
            return self._session.run(None, {"image": batch})[0]
        import torch

        with torch.no_grad():
            return self._session(torch.as_tensor(batch)).numpy()

    def eager_network(self):
        """Return the PyTorch network (for Grad-CAM) rebuilt from the description and the TorchScript file's weights."""
        import torch

        from crossmed.model.networks import build_network

        scripted = torch.jit.load(str(self.artifact("torchscript")), map_location="cpu")
        net = build_network(self.description["training"]["network"])
        net.load_state_dict({key.removeprefix("net."): value for key, value in scripted.state_dict().items()})
        return net.eval()
