"""Which image format a file name says it holds (no reading, no heavy imports: argument checks use it)."""

from pathlib import Path

KINDS = {".dcm": "dicom", ".dicom": "dicom", ".nii": "nifti", ".gz": "nifti", ".png": "png", ".jpg": "jpeg",
         ".jpeg": "jpeg"}


def image_kind(path: str | Path) -> str | None:
    """Return 'dicom', 'nifti', 'png' or 'jpeg' from the file name, or None when not an image name."""
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return "nifti"
    return KINDS.get(Path(name).suffix) if not name.endswith(".gz") else None
