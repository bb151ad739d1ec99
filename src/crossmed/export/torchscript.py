"""Export a network that outputs class probabilities to TorchScript and check it against the eager one."""

import hashlib
import io
import zipfile
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
    write_bytes_atomic(path, without_debug_info(buffer.getvalue()))
    return traced


def without_debug_info(archive: bytes) -> bytes:
    """Return a TorchScript archive without its *.debug_pkl records and with a serialization id made from the rest.

    The debug records hold the Python call stack at trace time: absolute paths of the virtual environment and of
    the calling script, which differ between checkouts and machines. TorchScript loads and runs without them.
    """
    source = zipfile.ZipFile(io.BytesIO(archive))
    kept = [info for info in source.infolist() if not info.filename.endswith(".debug_pkl")]
    digest = hashlib.sha256()
    for info in kept:
        if not info.filename.endswith(".data/serialization_id"):
            digest.update(info.filename.encode() + b"\0" + source.read(info))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as target:
        for info in kept:
            data = source.read(info)
            if info.filename.endswith(".data/serialization_id"):
                data = str(int(digest.hexdigest()[:32], 16)).zfill(40).encode()
            entry = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            target.writestr(entry, data)
    return out.getvalue()


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
