"""Refuse a DICOM file that would exhaust memory before pydicom decodes it: deflate bombs and oversized pixel data."""

import struct
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian

from crossmed.errors import InputError
from crossmed.limits import InputLimits, check_declared_pixels, check_inflated_size

_LONG_LENGTH_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


def data_set_offset(data: bytes) -> int:
    """Return where the data set starts after the preamble, 'DICM' and the (explicit VR little endian) file meta group."""
    offset = 132
    while offset + 8 <= len(data) and struct.unpack_from("<H", data, offset)[0] == 0x0002:
        if data[offset + 4:offset + 6] in _LONG_LENGTH_VRS:
            offset += 12 + struct.unpack_from("<I", data, offset + 8)[0]
        else:
            offset += 8 + struct.unpack_from("<H", data, offset + 6)[0]
    return offset


def check_deflated(path: Path, data: bytes, limits: InputLimits) -> None:
    """Raise InputError when a deflated data set would inflate beyond the limit (pydicom inflates it whole, unbounded)."""
    if data[128:132] != b"DICM":
        return
    offset = data_set_offset(data)
    if DeflatedExplicitVRLittleEndian.encode() in data[132:offset]:
        check_inflated_size(path, data[offset:], limits)


def pixel_description(path: Path, ds: Dataset) -> tuple[tuple[int, ...], float]:
    """Return the declared (frames, rows, columns, samples) and bytes per sample; raise InputError when incomplete."""
    try:
        shape = (int(ds.get("NumberOfFrames", 1) or 1), int(ds.Rows), int(ds.Columns), int(ds.get("SamplesPerPixel", 1)))
        return shape, int(ds.BitsAllocated) / 8
    except (AttributeError, TypeError, ValueError) as err:
        raise InputError(path, f"image pixel description incomplete ({err})") from err


def check_pixel_description(path: Path, ds: Dataset, limits: InputLimits) -> None:
    """Raise InputError when the header's pixel description is incomplete or declares more than the limits allow."""
    check_declared_pixels(path, *pixel_description(path, ds), limits)
