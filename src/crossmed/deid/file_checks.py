"""Reasons to refuse a DICOM file before de-identifying it: burned-in text, missing or short pixel data."""

from pydicom.dataset import Dataset

# SOP classes and modalities that usually carry burned-in text when BurnedInAnnotation is absent.
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
BURNED_IN_PRONE_MODALITIES = {"US", "SC", "OT", "XC", "ES"}


def burned_in_reason(ds: Dataset) -> str | None:
    """Return why the pixels may hold burned-in identifying text, or None if they are not suspected."""
    flag = str(ds.get("BurnedInAnnotation", "") or "").upper()
    if flag == "YES":
        return "BurnedInAnnotation is YES"
    if flag == "NO":
        return None
    sop_class = str(ds.get("SOPClassUID", ""))
    modality = str(ds.get("Modality", "")).upper()
    if sop_class.startswith(SECONDARY_CAPTURE_PREFIX):
        return "secondary capture without BurnedInAnnotation usually carries burned-in text"
    if modality in BURNED_IN_PRONE_MODALITIES:
        return f"modality {modality} without BurnedInAnnotation usually carries burned-in text"
    return None


def pixel_data_problem(ds: Dataset) -> str | None:
    """Return why the pixel data is missing or truncated, or None if it looks whole."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        return "no pixel data"
    if "PixelData" not in ds:
        return None
    transfer_syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if transfer_syntax is not None and transfer_syntax.is_compressed:
        return None if len(ds.PixelData) > 8 else "encapsulated pixel data is empty"
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        expected_bits = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * frames * int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError) as err:
        return f"image pixel description incomplete ({err})"
    expected = (expected_bits + 7) // 8
    actual = len(ds.PixelData)
    if actual < expected:
        return f"pixel data truncated: {actual} of {expected} bytes"
    return None
