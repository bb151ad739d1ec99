"""Re-write NIfTI images as gzipped single-file NIfTI with a fresh header, and check a written .nii.gz.

The fresh header keeps only what the pipeline reads (data type, scaling, voxel spacing and orientation); the check
parses the gzip header, the whole stream and the NIfTI header again, so nothing else can travel.
"""

import gzip
import zlib
from math import prod
from pathlib import Path

import nibabel as nib
import numpy as np

from crossmed.deid.image_limits import INFLATE_STEP, check_pixel_count
from crossmed.errors import InputError

# Extensions are read by nibabel before they can be dropped; real ones are kilobytes, a bomb is not.
NIFTI_MAX_VOX_OFFSET = 1 << 26
NIFTI_NUMBER_KINDS = "uif"  # what the pipeline's float32 read can take
QFORM_FIELDS = ("quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z")
SFORM_FIELDS = ("srow_x", "srow_y", "srow_z")
NIFTI_KEPT_FIELDS = {"dim", "datatype", "bitpix", "pixdim", "vox_offset", "scl_slope", "scl_inter", "xyzt_units",
                     "qform_code", "sform_code", *QFORM_FIELDS, *SFORM_FIELDS}
NIFTI_TEXT_FIELDS = {"descrip", "aux_file", "db_name", "intent_name", "data_type", "unused_str"}
GZIP_FLAGS = {0x04: "an extra field (FEXTRA)", 0x08: "a file name (FNAME)", 0x10: "a comment (FCOMMENT)"}
GZIP_UNEXPECTED_FLAGS = 0xFF & ~0x1C


def rewrite_nifti(source: Path, tmp: Path, max_pixels: int) -> None:
    """Write the voxels of `source` with a fresh header as gzipped single-file NIfTI to `tmp`, verified by reading."""
    declared = _declared_nifti_header(source)
    _check_nifti_limits(source, declared, max_pixels)
    try:
        image = nib.load(source)
        if type(image) not in (nib.Nifti1Image, nib.Nifti2Image):
            raise ValueError(f"loaded as {type(image).__name__}")
        raw = np.asanyarray(image.dataobj.get_unscaled())
    except Exception as err:  # nibabel raises many kinds for damaged files
        raise InputError(source, f"unreadable NIfTI ({type(err).__name__}: {err})") from err
    raw = raw.astype(raw.dtype.newbyteorder("="), copy=False)  # the fresh header is native-endian
    header = _fresh_nifti_header(image.header, raw, (image.dataobj.slope, image.dataobj.inter))
    _write_nifti_gz(tmp, header, raw)
    if not _same_nifti_reads(image, raw, tmp, type(header)):
        raise InputError(source, "re-written voxels or geometry differ from the original (please report this image)")


def _declared_nifti_header(source: Path):
    """Return the header of `source` parsed from its first bytes only (no extensions, no voxels read yet)."""
    try:
        opener = gzip.open if source.name.lower().endswith(".gz") else open
        with opener(source, "rb") as fh:
            block = fh.read(nib.Nifti2Header.sizeof_hdr)
    except (OSError, EOFError, zlib.error) as err:
        raise InputError(source, f"unreadable NIfTI ({type(err).__name__}: {err})") from err
    klass = _nifti_header_class(block)
    if klass is None or len(block) < klass.sizeof_hdr:
        raise InputError(source, "not a NIfTI-1 or NIfTI-2 file (header size field)")
    header = klass(block[:klass.sizeof_hdr], check=False)
    if header["magic"].item() not in (b"n+1", b"n+2"):
        raise InputError(source, f"not a single-file NIfTI (magic {header['magic'].item()!r})")
    return header


def _nifti_header_class(block: bytes):
    """Return Nifti1Header or Nifti2Header from the sizeof_hdr field (either byte order), or None."""
    for order in ("little", "big"):
        size = int.from_bytes(block[:4], order)
        for klass in (nib.Nifti1Header, nib.Nifti2Header):
            if len(block) >= 4 and size == klass.sizeof_hdr:
                return klass
    return None


def _check_nifti_limits(source: Path, header, max_pixels: int) -> None:
    """Refuse a NIfTI whose declared size, data type or voxel offset make it unsafe or useless to read."""
    try:
        shape, dtype = header.get_data_shape(), header.get_data_dtype()
    except Exception as err:  # nibabel raises several kinds for nonsense dim/datatype values
        raise InputError(source, f"unreadable NIfTI header ({type(err).__name__}: {err})") from err
    if dtype.kind not in NIFTI_NUMBER_KINDS:
        raise InputError(source, f"NIfTI data type {dtype} is not a plain number type")
    check_pixel_count(source, shape, max_pixels)
    if not shape or prod(shape) == 0:
        raise InputError(source, f"NIfTI declares no voxels (shape {shape})")
    offset = int(header["vox_offset"])
    if offset > NIFTI_MAX_VOX_OFFSET:
        raise InputError(source, f"NIfTI voxel offset {offset} is over the limit of {NIFTI_MAX_VOX_OFFSET}")
    needed = offset + prod(shape) * dtype.itemsize
    if not source.name.lower().endswith(".gz") and source.stat().st_size < needed:
        raise InputError(source, f"NIfTI declares {needed} bytes but the file has {source.stat().st_size}")


def _fresh_nifti_header(old, raw: np.ndarray, scaling: tuple[float, float]):
    """Return a new header of the same NIfTI version with only shape, dtype, scaling, units, spacing, qform, sform."""
    new = type(old)() if type(old) in (nib.Nifti1Header, nib.Nifti2Header) else nib.Nifti1Header()
    new.set_data_shape(raw.shape)
    new.set_data_dtype(raw.dtype)
    pixdim = new["pixdim"].copy()
    pixdim[: raw.ndim + 1] = old["pixdim"][: raw.ndim + 1]  # qfac and the used spacings; unused slots could hide bytes
    new["pixdim"] = pixdim
    new["xyzt_units"] = old["xyzt_units"]
    # nibabel moves the file's scaling to the proxy on load (header values become NaN); slope 1, inter 0 = none.
    new["scl_slope"], new["scl_inter"] = scaling
    for code, fields in (("qform_code", QFORM_FIELDS), ("sform_code", SFORM_FIELDS)):
        if int(old[code]) > 0:  # raw copies, not set_qform/set_sform: those round-trip through floats
            for name in (code, *fields):
                new[name] = old[name]
    new["vox_offset"] = new.sizeof_hdr + 4  # no extensions: the voxels follow the empty extension flag
    return new


def _write_nifti_gz(tmp: Path, header, raw: np.ndarray) -> None:
    """Write header, empty extension flag and voxels (Fortran order) as one gzip member with no name and mtime 0."""
    # Our own GzipFile: nibabel picks compression from the file name, and the atomic temp name ends in .tmp.
    with open(tmp, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as gz:
        gz.write(header.binaryblock)
        gz.write(b"\0\0\0\0")
        for index in range(raw.shape[-1]):  # slabs along the slowest axis keep the copy small
            gz.write(raw[..., index].tobytes(order="F"))


def _same_nifti_reads(image, raw: np.ndarray, tmp: Path, header_class) -> bool:
    """True when the written file has the same stored voxels, scaling, affine, zooms and units as `image`."""
    image_class = nib.Nifti2Image if header_class is nib.Nifti2Header else nib.Nifti1Image
    with gzip.open(tmp, "rb") as fh:
        written = image_class.from_stream(fh)
        written_raw = np.asanyarray(written.dataobj.get_unscaled())
    scaling = [image.dataobj.slope, image.dataobj.inter], [written.dataobj.slope, written.dataobj.inter]
    return (written_raw.dtype == raw.dtype and np.array_equal(written_raw, raw)
            and np.array_equal(*scaling, equal_nan=True) and np.array_equal(image.affine, written.affine)
            and image.header.get_zooms() == written.header.get_zooms()
            and image.header.get_xyzt_units() == written.header.get_xyzt_units())


def nifti_gz_problems(path: Path) -> list[str]:
    """List what a written .nii.gz holds beyond voxels and allowed header values, gzip header and trailer included."""
    with open(path, "rb") as fh:
        problems = _gzip_header_problems(fh.read(10))
    head, size, stream_problems = _inflate_gzip(path, nib.Nifti2Header.sizeof_hdr + 4)
    return problems + stream_problems + _nifti_header_problems(head, size)


def _gzip_header_problems(head: bytes) -> list[str]:
    """List gzip header fields that may carry data: file name, comment, extra field, modification time."""
    if len(head) < 10 or head[:3] != b"\x1f\x8b\x08":
        return ["not a gzip file"]
    flags, mtime = head[3], int.from_bytes(head[4:8], "little")
    problems = [f"gzip header holds {what}" for bit, what in GZIP_FLAGS.items() if flags & bit]
    if flags & GZIP_UNEXPECTED_FLAGS:
        problems.append(f"gzip header flags {flags:#04x} not expected")
    if mtime:
        problems.append(f"gzip header holds a modification time ({mtime})")
    return problems


def _inflate_gzip(path: Path, keep: int) -> tuple[bytes, int, list[str]]:
    """Inflate one gzip member in bounded steps; return its first `keep` bytes, its size, and stream problems."""
    inflater, head, size = zlib.decompressobj(16 + zlib.MAX_WBITS), b"", 0
    try:
        with open(path, "rb") as fh:
            while not inflater.eof and (block := fh.read(INFLATE_STEP)):
                while block and not inflater.eof:
                    out = inflater.decompress(block, INFLATE_STEP)
                    head += out[: max(keep - len(head), 0)]
                    size += len(out)
                    block = inflater.unconsumed_tail
            here = fh.tell()
            trailing = len(inflater.unused_data) + fh.seek(0, 2) - here
    except zlib.error as err:
        return head, size, [f"gzip stream is damaged ({err})"]
    problems = [] if inflater.eof else ["gzip stream is incomplete"]
    if trailing:
        problems.append(f"{trailing} bytes after the gzip stream")
    return head, size, problems


def _nifti_header_problems(block: bytes, size: int) -> list[str]:
    """List NIfTI header fields outside the allow-list that differ from a fresh header, extensions and extra bytes."""
    klass = _nifti_header_class(block)
    if klass is None or len(block) < klass.sizeof_hdr + 4:
        return ["not a NIfTI-1 or NIfTI-2 header"]
    header = klass(block[:klass.sizeof_hdr], check=False)
    fresh = klass(endianness=header.endianness)
    problems = []
    for name in header.template_dtype.names:
        if name not in NIFTI_KEPT_FIELDS and header[name].tobytes() != fresh[name].tobytes():
            kind = "text field" if name in NIFTI_TEXT_FIELDS else "field"
            problems.append(f"NIfTI header {kind} {name} is not empty")
    problems += _nifti_geometry_problems(header, fresh)
    if block[klass.sizeof_hdr:klass.sizeof_hdr + 4] != b"\0\0\0\0":
        problems.append("NIfTI header extensions present")
    return problems + _nifti_size_problems(header, size)


def _nifti_geometry_problems(header, fresh) -> list[str]:
    """List unused dim/pixdim slots that are set, and qform/sform values kept while their code says unused."""
    problems = []
    ndim = int(header["dim"][0])
    if not 1 <= ndim <= 7:
        return [f"NIfTI dim[0] is {ndim}"]
    if np.any(header["dim"][ndim + 1:] != 1) or np.any(header["pixdim"][ndim + 1:] != 1):
        problems.append("NIfTI unused dim/pixdim slots are set")
    for code, fields in (("qform_code", QFORM_FIELDS), ("sform_code", SFORM_FIELDS)):
        if int(header[code]) == 0 and any(header[n].tobytes() != fresh[n].tobytes() for n in fields):
            problems.append(f"NIfTI {code} is 0 but its fields are set")
    return problems


def _nifti_size_problems(header, size: int) -> list[str]:
    """List a voxel offset leaving room for hidden bytes, and content before or after the voxel data."""
    offset = int(header["vox_offset"])
    if offset != header.sizeof_hdr + 4:
        return [f"NIfTI voxel offset {offset} leaves room between header and voxels"]
    try:
        expected = offset + prod(header.get_data_shape()) * header.get_data_dtype().itemsize
    except Exception as err:  # nibabel raises several kinds for nonsense dim/datatype values
        return [f"NIfTI header unreadable ({type(err).__name__}: {err})"]
    return [] if size == expected else [f"NIfTI content is {size} bytes; header implies {expected}"]
