"""Images given as bytes (an upload, a request body): recognise the format by its signature and read it like a file."""

import gzip
import io
import tempfile
from pathlib import Path

import numpy as np

from crossmed.errors import InputError

SUFFIXES = {"dicom": ".dcm", "png": ".png", "jpeg": ".jpg", "nifti": ".nii", "nifti_gz": ".nii.gz", "npy": ".npy"}


def _is_nifti(header: bytes) -> bool:
    """Return whether `header` starts a NIfTI-1 or NIfTI-2 single file (magic 'n+1' at 344 or 'n+2' at 4)."""
    return header[344:348] in (b"n+1\x00", b"ni1\x00") or header[4:8] in (b"n+2\x00", b"ni2\x00")


def sniff(data: bytes) -> str | None:
    """Return 'dicom', 'png', 'jpeg', 'nifti', 'nifti_gz' or 'npy' from the bytes' signature, or None when unknown."""
    if data[128:132] == b"DICM":
        return "dicom"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x93NUMPY"):
        return "npy"
    if data.startswith(b"\x1f\x8b"):
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
                return "nifti_gz" if _is_nifti(stream.read(544)) else None
        except OSError:
            return None
    return "nifti" if _is_nifti(data) else None


def load_npy(data: bytes, where: str) -> np.ndarray:
    """Return the array of .npy bytes (no pickled objects); raise InputError naming `where` when unreadable."""
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as err:
        raise InputError(where, f"unreadable .npy array ({err})") from err


class BytesAsFile:
    """A temporary file holding image bytes under the suffix of their format, removed on exit; yields its path."""

    def __init__(self, data: bytes, kind: str):
        self.data, self.kind = data, kind
        self._folder: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> Path:
        self._folder = tempfile.TemporaryDirectory(prefix="crossmed-image-")
        path = Path(self._folder.name) / f"image{SUFFIXES[self.kind]}"
        path.write_bytes(self.data)
        return path

    def __exit__(self, *exc) -> None:
        self._folder.cleanup()
