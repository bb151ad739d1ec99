"""Read one image file (DICOM, NIfTI, PNG/JPEG) as channel-first pixels with its spacing, whatever the format."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossmed.data.dicom_images import read_dicom_image
from crossmed.data.image_kinds import KINDS, image_kind  # noqa: F401 (callers import them from here)
from crossmed.errors import InputError
from crossmed.limits import InputLimits, check_declared_pixels, check_file_size, check_finite


@dataclass
class ImageFile:
    """Pixels (C, *spatial) float32 and the physical spacing in mm (None when the format has none)."""

    pixels: np.ndarray
    spacing_mm: tuple[float, ...] | None


def _read_picture(path: Path, channels: int, limits: InputLimits) -> ImageFile:
    from PIL import Image

    try:
        with Image.open(path) as picture:
            check_declared_pixels(path, picture.size, 4.0, limits)  # before decoding: headers can declare anything
            array = np.asarray(picture.convert("L" if channels == 1 else "RGB"), dtype=np.float32)
    except InputError:
        raise
    except Exception as err:  # Pillow raises many kinds: unidentified, truncated, decompression bomb
        raise InputError(path, f"unreadable image ({type(err).__name__}: {err})") from err
    return ImageFile(array[None] if channels == 1 else np.moveaxis(array, -1, 0), None)


def _read_nifti(path: Path, spatial_dims: int, limits: InputLimits) -> ImageFile:
    import nibabel as nib

    try:
        loaded = nib.load(path)
        check_declared_pixels(path, loaded.header.get_data_shape(), 4.0, limits)  # float32 after reading
        image = nib.as_closest_canonical(loaded)  # RAS+ axis order, whatever the scanner wrote
        array = np.asarray(image.dataobj, dtype=np.float32)
    except InputError:
        raise
    except Exception as err:  # nibabel raises many kinds for damaged files
        raise InputError(path, f"unreadable NIfTI ({type(err).__name__}: {err})") from err
    check_finite(path, array)
    zooms = tuple(float(z) for z in image.header.get_zooms())
    while array.ndim > spatial_dims and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != spatial_dims:
        raise InputError(path, f"expected a {spatial_dims}D single-channel volume, got shape {array.shape}")
    return ImageFile(array[None], zooms[:spatial_dims])


def read_image_file(path: str | Path, channels: int = 1, spatial_dims: int = 2,
                    limits: InputLimits = InputLimits()) -> ImageFile:
    """Return the pixels of a DICOM, NIfTI, PNG or JPEG file; raise InputError naming the file when unusable or too large."""
    path = Path(path)
    kind = image_kind(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    check_file_size(path, limits)
    if kind == "dicom":
        if spatial_dims != 2 or channels != 1:
            raise InputError(path, "DICOM input is read as single-frame 2D grayscale images")
        image = read_dicom_image(path, limits)
        return ImageFile(image.pixels[None], image.spacing_mm)
    if kind == "nifti":
        return _read_nifti(path, spatial_dims, limits)
    if kind in ("png", "jpeg"):
        if spatial_dims != 2:
            raise InputError(path, "PNG/JPEG images are 2D; use NIfTI for 3D volumes")
        return _read_picture(path, channels, limits)
    raise InputError(path, "unknown image type (known: .dcm, .nii, .nii.gz, .png, .jpg, .jpeg)")


def unreadable_reason(path: str | Path) -> str | None:
    """Return why a PNG/JPEG or NIfTI file cannot be decoded (headers and structure only), or None when it can."""
    path = Path(path)
    kind = image_kind(path)
    try:
        if kind in ("png", "jpeg"):
            from PIL import Image

            with Image.open(path) as picture:
                picture.verify()
        elif kind == "nifti":
            import nibabel as nib

            nib.load(path).header.get_data_shape()
    except Exception as err:  # PIL and nibabel raise many kinds for damaged files
        return f"unreadable image ({type(err).__name__}: {err})"
    return None
