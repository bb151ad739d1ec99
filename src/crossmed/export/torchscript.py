"""Export a network that outputs class probabilities to TorchScript and check it against the eager one."""

import io
from pathlib import Path

import numpy as np
import torch

from crossmed.errors import CrossmedError
from crossmed.files import write_bytes_atomic


class ParityError(CrossmedError):
    """The exported model's outputs differ from the eager network's beyond tolerance."""


class WithProbabilities(torch.nn.Module):
    """A classifier followed by softmax (sigmoid per label when multi-label): the exported model returns probabilities."""

    def __init__(self, net: torch.nn.Module, multilabel: bool = False):
        super().__init__()
        self.net = net
        self.multilabel = multilabel

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Return (N, classes) probabilities for (N, C, *spatial) images."""
        logits = self.net(image)
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)


def export_torchscript(net: torch.nn.Module, example: np.ndarray, path: str | Path,
                       multilabel: bool = False) -> torch.jit.ScriptModule:
    """Trace `net` with its output activation on CPU using `example` images and write it atomically; return the module."""
    model = WithProbabilities(net, multilabel).to("cpu").eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.as_tensor(example[:2]), check_trace=False)
    buffer = io.BytesIO()  # saved to a file, the archive is named after it: a buffer keeps the bytes a function of the model
    torch.jit.save(traced, buffer)
    write_bytes_atomic(path, buffer.getvalue())
    return traced


def check_parity(net: torch.nn.Module, exported_path: str | Path, images: np.ndarray, atol: float,
                 multilabel: bool = False) -> float:
    """Return max |p_exported - p_eager| over `images`, reloading the file; raise ParityError above `atol`."""
    loaded = torch.jit.load(str(exported_path), map_location="cpu").eval()
    eager = WithProbabilities(net, multilabel).to("cpu").eval()
    batch = torch.as_tensor(images)
    with torch.no_grad():
        difference = float((loaded(batch) - eager(batch)).abs().max())
    if not difference <= atol:
        raise ParityError(f"{exported_path}: exported probabilities differ from the eager model by {difference:.3g} > {atol}")
    return difference
