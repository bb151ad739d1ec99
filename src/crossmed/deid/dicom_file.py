"""Read a source DICOM file within limits and write a de-identified one from scratch: zero preamble, crossmed's own
file meta, explicit VR (little endian, unless the source was big endian), pixels decoded and re-written from their values so no codec metadata (JPEG
APP/COM segments), no bits above Bits Stored and no trailing bytes travel.
"""

import io
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import pixel_array
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, UID

from crossmed import __version__
from crossmed.data.dicom_bounds import check_deflated, pixel_description
from crossmed.deid.file_checks import burned_in_reason, pixel_data_problem
from crossmed.deid.refusals import Refusal
from crossmed.errors import InputError
from crossmed.limits import InputLimits, check_declared_pixels, check_file_size

# crossmed's own implementation identifiers: the source system's never travel.
IMPLEMENTATION_CLASS_UID = "2.25.69689975604657715252162115254388801715"
IMPLEMENTATION_VERSION_NAME = f"CROSSMED_{__version__}"[:16]  # SH: 16 characters
# Native pixel data that starts like an item tag, a JPEG, JPEG 2000 or JPEG-LS stream is a codestream in disguise:
# decoded as pixels it would carry its COM and APPn text along.
COMPRESSED_SIGNATURES = (b"\xfe\xff\x00\xe0", b"\xff\xfe\xe0\x00", b"\xff\xd8\xff", b"\xff\x4f\xff\x51",
                         b"\x00\x00\x00\x0cjP  ")


def _check_bounds(path: Path, data: bytes, limits: InputLimits) -> None:
    """Refuse a file whose deflated data set would inflate beyond the limit."""
    try:
        check_deflated(path, data, limits)
    except InputError as err:
        raise Refusal(path, "too_large", err.reason) from err


def _parse(path: Path, data: bytes) -> Dataset:
    try:
        return pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError as err:
        headerless = _without_file_meta(data)
        if headerless is None:
            raise Refusal(path, "not_dicom", f"not a DICOM file ({err})") from err
        return headerless
    except Exception as err:  # pydicom raises many kinds on damaged files; each is a reason to refuse
        raise Refusal(path, "unreadable", f"unreadable DICOM ({type(err).__name__}: {err})") from err


def _without_file_meta(data: bytes) -> Dataset | None:
    """Return a data set written without preamble and file meta (older systems do this), or None if it is not one."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        if "SOPInstanceUID" not in ds or "SOPClassUID" not in ds:
            return None
    except Exception:
        return None
    implicit, little = ds.original_encoding
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                      ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    return ds


def source_transfer_syntax(ds: Dataset) -> UID:
    """Return the transfer syntax a source data set was read with."""
    return UID(str(getattr(ds.file_meta, "TransferSyntaxUID", ExplicitVRLittleEndian)))


def _declared_pixels(path: Path, ds: Dataset, limits: InputLimits) -> None:
    """Refuse pixels whose decoded size, as the header declares it, exceeds the limits (before any decoding)."""
    try:
        shape, bytes_per_sample = pixel_description(path, ds)
    except InputError as err:
        raise Refusal(path, "damaged_pixel_data", err.reason) from err
    try:
        check_declared_pixels(path, shape, bytes_per_sample, limits)
    except InputError as err:
        raise Refusal(path, "too_large", err.reason) from err


def _decode_encapsulated(path: Path, ds: Dataset) -> None:
    """Decode compressed pixel data in place to native little endian (codec segments such as JPEG COM/APPn go)."""
    try:
        ds.decompress(generate_instance_uid=False)
    except Exception as err:  # missing plugin (NotImplementedError/RuntimeError) or a damaged codestream
        raise Refusal(path, "undecodable_pixel_data",
                      f"pixel data in {source_transfer_syntax(ds).name} could not be decoded ({type(err).__name__}: {err})") from err


def _rewrite_native_pixels(path: Path, ds: Dataset) -> None:
    """Re-write native pixel data from its decoded values, interleaved, in the byte order of the output.

    Bits above Bits Stored (where legacy overlays and anything else hide), bytes after the declared
    frames and the source's byte order do not survive; 1-bit data is only trimmed to its declared size.
    """
    element = ds["PixelData"]
    if element.is_undefined_length or bytes(element.value[:8]).startswith(COMPRESSED_SIGNATURES):
        raise Refusal(path, "damaged_pixel_data", "compressed (encapsulated) pixel data under a native transfer syntax")
    if int(ds.BitsAllocated) not in (8, 16, 32):
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        expected = (int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * frames * int(ds.BitsAllocated) + 7) // 8
        ds.PixelData = ds.PixelData[:expected + expected % 2]
        return
    try:
        pixels = pixel_array(ds, raw=True)  # raw: colour spaces stay as stored; planar configuration becomes 0
    except Exception as err:  # a pixel description pydicom cannot apply
        raise Refusal(path, "damaged_pixel_data", f"pixel data cannot be decoded ({type(err).__name__}: {err})") from err
    order = ">" if output_transfer_syntax(source_transfer_syntax(ds)) == ExplicitVRBigEndian else "<"
    ds.PixelData = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder(order)).tobytes()
    ds["PixelData"].VR = "OB" if int(ds.BitsAllocated) == 8 else "OW"
    if int(ds.get("SamplesPerPixel", 1)) > 1:
        ds.PlanarConfiguration = 0


def _one_pixel_data(ds: Dataset) -> None:
    """Keep only the integer pixel data when float pixel data travel beside it (an image has one)."""
    for keyword in ("FloatPixelData", "DoubleFloatPixelData"):
        if "PixelData" in ds and keyword in ds:
            del ds[keyword]


def recognizable_reason(ds: Dataset) -> str | None:
    """Return why the image shows recognisable features of the patient (a face), or None."""
    if str(ds.get("RecognizableVisualFeatures", "") or "").upper() == "YES":
        return "Recognizable Visual Features is YES"
    return None


def read_source_dicom(path: Path, limits: InputLimits, allow_burned_in: bool) -> Dataset:
    """Return a source file's data set with native pixel data, or raise Refusal with the category and detail."""
    try:
        check_file_size(path, limits)
        data = path.read_bytes()
    except InputError as err:
        raise Refusal(path, "too_large", err.reason) from err
    except OSError as err:
        raise Refusal(path, "unreadable", f"cannot read ({err.strerror})") from err
    _check_bounds(path, data, limits)
    ds = _parse(path, data)
    problem = pixel_data_problem(ds)
    if problem:
        raise Refusal(path, "no_pixel_data" if problem == "no pixel data" else "damaged_pixel_data", problem)
    if not allow_burned_in and (reason := burned_in_reason(ds)):
        raise Refusal(path, "burned_in_text", reason)
    if reason := recognizable_reason(ds):
        raise Refusal(path, "recognizable_features", reason)
    if not all(keyword in ds for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID")):
        raise Refusal(path, "missing_uid")
    _one_pixel_data(ds)
    if "PixelData" in ds:
        _declared_pixels(path, ds, limits)
        if source_transfer_syntax(ds).is_compressed:
            _decode_encapsulated(path, ds)
        _rewrite_native_pixels(path, ds)
    return ds


def output_transfer_syntax(source: UID) -> UID:
    """Return the transfer syntax a de-identified file is written in: explicit VR little endian, or big endian for a
    big-endian source (pydicom writes no other byte order than the one it read; the syntax is retired and rare)."""
    return ExplicitVRBigEndian if source == ExplicitVRBigEndian else ExplicitVRLittleEndian


def encode_deidentified(ds: Dataset, transfer_syntax: UID = ExplicitVRLittleEndian) -> bytes:
    """Return the DICOM file bytes of `ds` with a zero preamble and a file meta group built from scratch."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
