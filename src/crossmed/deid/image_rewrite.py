"""Re-write PNG, JPEG and NIfTI images from their pixels alone, and check that a written file holds nothing else.

Non-DICOM images from a hospital carry free text where no one looks: PNG text/EXIF/ICC chunks, JPEG EXIF, COM, XMP
and other APPn segments, NIfTI description fields and header extensions. Rather than strip what is known to be
dangerous, a new file is built from the decoded pixels plus the few values the pipeline reads (NIfTI: data type,
scaling, voxel spacing and orientation), and the written bytes are parsed again to prove nothing else got in.
"""

from pathlib import Path

from crossmed.data.image_files import image_kind
from crossmed.deid.nifti_rewrite import nifti_gz_problems, rewrite_nifti
from crossmed.deid.picture_rewrite import png_problems, rewrite_picture
from crossmed.errors import InputError
from crossmed.files import atomic_path

DEFAULT_MAX_PIXELS = 2**27


def rewrite_image(source: Path, target_without_suffix: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Path:
    """Write `source` (PNG/JPEG -> .png, NIfTI -> .nii.gz) from its pixels alone beside the target; return its path."""
    source, target_without_suffix = Path(source), Path(target_without_suffix)
    kind = image_kind(source)
    if kind not in ("png", "jpeg", "nifti"):
        raise InputError(source, "not a PNG, JPEG or NIfTI file name (.png, .jpg, .jpeg, .nii, .nii.gz)")
    if not source.is_file():
        raise InputError(source, "file not found")
    written_kind, suffix = ("nifti", ".nii.gz") if kind == "nifti" else ("png", ".png")
    target = target_without_suffix.with_name(target_without_suffix.name + suffix)
    with atomic_path(target) as tmp:
        if written_kind == "nifti":
            rewrite_nifti(source, tmp, max_pixels)
        else:
            rewrite_picture(source, tmp, max_pixels)
        problems = metadata_problems(tmp, kind=written_kind)
        if problems:
            raise InputError(source, "rewritten file still holds metadata: " + "; ".join(problems))
    return target


def metadata_problems(path: Path, *, kind: str | None = None) -> list[str]:
    """List what a written .png or .nii.gz holds beyond pixels and the allowed header values (empty when clean)."""
    path = Path(path)
    kind = kind or ("png" if path.name.lower().endswith(".png") else
                    "nifti" if path.name.lower().endswith(".nii.gz") else None)
    if kind == "png":
        return png_problems(path)
    if kind == "nifti":
        return nifti_gz_problems(path)
    return [f"{path.name}: not a file this module writes (.png or .nii.gz)"]
