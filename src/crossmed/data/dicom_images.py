"""Read a 2D DICOM image as modality values (rescale applied) with its pixel spacing."""

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut

from crossmed.data.dicom_bounds import check_deflated, check_pixel_description
from crossmed.errors import InputError
from crossmed.limits import InputLimits, check_file_size, check_finite


@dataclass
class DicomImage:
    """Pixels in modality units and the header fields preprocessing needs."""

    pixels: np.ndarray
    spacing_mm: tuple[float, float]
    patient_id: str
    study_uid: str
    sop_instance_uid: str
    photometric: str


def read_dicom_image(path: str | Path, limits: InputLimits = InputLimits()) -> DicomImage:
    """Return the image of a single-frame 2D DICOM file; raise InputError naming the file if it cannot be used.

    Size, inflation and the declared pixel size are checked against `limits` before anything is decoded.
    """
    path = Path(path)
    check_file_size(path, limits)
    data = path.read_bytes()
    check_deflated(path, data, limits)
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        if "PixelData" in ds:
            check_pixel_description(path, ds, limits)
        pixels = ds.pixel_array
    except InputError:
        raise
    except Exception as err:  # damaged files fail in many ways inside pydicom and its decoders
        raise InputError(path, f"unreadable DICOM image ({type(err).__name__}: {err})") from err
    if pixels.ndim != 2:
        raise InputError(path, f"expected one 2D grayscale frame, got pixel array of shape {pixels.shape}")
    values = apply_modality_lut(pixels, ds).astype(np.float32)
    check_finite(path, values)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "MONOCHROME1":
        values = values.max() - values  # bright = dense, as in MONOCHROME2
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    if not spacing:
        raise InputError(path, "no PixelSpacing or ImagerPixelSpacing; cannot resample to a common grid")
    return DicomImage(values, (float(spacing[0]), float(spacing[1])), str(ds.get("PatientID", "")),
                      str(ds.get("StudyInstanceUID", "")), str(ds.SOPInstanceUID), photometric)


def acquisition_device(header: pydicom.Dataset) -> str:
    """Return 'Manufacturer ManufacturerModelName' of a DICOM header (a subgroup column), '' when neither is there."""
    return " ".join(str(header.get(keyword, "")).strip() for keyword in ("Manufacturer", "ManufacturerModelName")).strip()


def read_acquisition_device(path: str | Path) -> str:
    """Return the acquisition device named in a DICOM file's header; raise InputError naming the file if unreadable."""
    try:
        return acquisition_device(pydicom.dcmread(path, stop_before_pixels=True))
    except Exception as err:  # damaged files fail in many ways inside pydicom
        raise InputError(path, f"unreadable DICOM header ({type(err).__name__}: {err})") from err
