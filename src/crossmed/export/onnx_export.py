"""Export a network with its output activation to ONNX (dynamic batch) and check it with onnxruntime."""

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from crossmed.export.torchscript import ParityError, WithProbabilities
from crossmed.files import atomic_path

log = logging.getLogger("crossmed.export")


def export_onnx(net: torch.nn.Module, example: np.ndarray, path: str | Path, opset: int, multilabel: bool = False) -> None:
    """Write `net` with softmax (sigmoid per label) as ONNX with a dynamic batch axis, via torch.export (dynamo)."""
    model = WithProbabilities(net, multilabel).to("cpu").eval()
    batch = torch.export.Dim("batch", min=1)
    progress = io.StringIO()  # the exporter prints its steps; keep them for a failure message
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # it warns that torchvision's operators are not registered
    with atomic_path(path) as tmp, contextlib.redirect_stdout(progress), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.onnx.export(model, (torch.as_tensor(example[:2]),), dynamo=True, opset_version=opset,
                                    input_names=["image"], output_names=["probabilities"],
                                    dynamic_shapes={"image": {0: batch}}, external_data=False, verbose=False)
        if program is None:
            raise ParityError(f"{path}: the ONNX exporter returned no program:\n{progress.getvalue()}")
        program.save(str(tmp), external_data=False)
        _drop_stack_traces(tmp)


def check_onnx_parity(net: torch.nn.Module, onnx_path: str | Path, images: np.ndarray, atol: float,
                      multilabel: bool = False) -> float:
    """Return max |p_onnxruntime - p_eager| over `images` in batches; raise ParityError above `atol`."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    eager = WithProbabilities(net, multilabel).to("cpu").eval()
    difference = 0.0
    for start in range(0, len(images), 64):
        batch = np.ascontiguousarray(images[start:start + 64], dtype=np.float32)
        with torch.no_grad():
            expected = eager(torch.as_tensor(batch)).numpy()
        difference = max(difference, float(np.abs(session.run(None, {"image": batch})[0] - expected).max()))
    if not difference <= atol:
        raise ParityError(f"{onnx_path}: onnxruntime probabilities differ from the PyTorch model by {difference:.3g} > {atol}")
    return difference


def _drop_stack_traces(path: Path) -> None:
    """Remove the exporter's per-node stack traces (absolute paths of this checkout and environment) from an ONNX file,
    so the same model gives the same bytes wherever it is exported; names, scopes and the graph are kept."""
    import onnx

    model = onnx.load(str(path))
    graphs = [model.graph, *(function for function in model.functions)]
    for graph in graphs:
        for node in graph.node:
            node.doc_string = ""
            kept = [(p.key, p.value) for p in node.metadata_props if "stack_trace" not in p.key]
            del node.metadata_props[:]
            for key, value in kept:
                node.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
