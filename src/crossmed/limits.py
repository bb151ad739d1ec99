"""Bounds on what one input file may make crossmed read or allocate, checked before anything is decoded.

A 130 KB deflate-compressed DICOM can inflate to gigabytes, a PNG header can declare a 30,000 x 30,000
image, and a sparse file can claim 2 GB: each is refused with the file and the reason before memory is
spent on it. De-identification and prediction use the same checks; only the defaults differ.
"""

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossmed.errors import InputError

MIB = 1024 * 1024
_INFLATE_CHUNK = 4 * MIB


@dataclass(frozen=True)
class InputLimits:
    """Largest file, inflated data set and decoded image accepted from one input."""

    max_file_bytes: int = 1024 * MIB
    max_inflated_bytes: int = 256 * MIB  # a deflated DICOM data set (headers; pixels are counted separately)
    max_decoded_bytes: int = 1024 * MIB  # pixels after decoding: rows x columns x samples x frames x bytes
    max_pixels: int = 2**27  # pixels (voxels) of one image, whatever their type

    @classmethod
    def from_megabytes(cls, max_file_mb: float, max_decoded_mb: float) -> "InputLimits":
        """Return limits given in MiB (as conf/ and the command line give them)."""
        return cls(max_file_bytes=int(max_file_mb * MIB), max_decoded_bytes=int(max_decoded_mb * MIB))


PREDICT_LIMITS = InputLimits(max_file_bytes=256 * MIB, max_inflated_bytes=64 * MIB, max_decoded_bytes=512 * MIB)


def check_file_size(path: Path, limits: InputLimits) -> int:
    """Return the file's size; raise InputError when it exceeds the limit (checked before any byte is read)."""
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise InputError(path, f"file of {size / MIB:.0f} MiB exceeds the {limits.max_file_bytes / MIB:.0f} MiB limit")
    return size


def check_inflated_size(path: Path, deflated: bytes, limits: InputLimits) -> None:
    """Raise InputError when raw-deflate data would inflate beyond the limit; inflates in bounded steps only."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total, pending = 0, deflated
    try:
        while pending:
            total += len(inflater.decompress(pending, _INFLATE_CHUNK))
            pending = inflater.unconsumed_tail
            if total > limits.max_inflated_bytes:
                raise InputError(path, f"deflated data set inflates beyond the {limits.max_inflated_bytes / MIB:.0f} MiB limit")
    except zlib.error as err:
        raise InputError(path, f"damaged deflated data set ({err})") from err


def check_declared_pixels(where, shape: tuple[int, ...], bytes_per_pixel: float, limits: InputLimits) -> None:
    """Raise InputError when an image header declares more pixels or decoded bytes than the limits allow."""
    pixels = int(np.prod([max(int(n), 0) for n in shape], dtype=np.float64)) if shape else 0
    if pixels > limits.max_pixels:
        raise InputError(where, f"image of {' x '.join(map(str, shape))} pixels exceeds the limit of {limits.max_pixels:,}")
    if pixels * bytes_per_pixel > limits.max_decoded_bytes:
        raise InputError(where, f"decoded image of {pixels * bytes_per_pixel / MIB:.0f} MiB exceeds the "
                                f"{limits.max_decoded_bytes / MIB:.0f} MiB limit")


def check_finite(where, pixels: np.ndarray) -> None:
    """Raise InputError when pixels hold NaN or infinity (a model would turn them into a silent, invalid answer)."""
    if np.issubdtype(pixels.dtype, np.floating) and not np.isfinite(pixels).all():
        bad = int(np.size(pixels) - np.count_nonzero(np.isfinite(pixels)))
        raise InputError(where, f"{bad} pixel value(s) are NaN or infinite")
