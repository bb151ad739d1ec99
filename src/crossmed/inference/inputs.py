"""What `crossmed predict` is given, checked before anything heavy loads: the model folder and the image files.

A folder argument stands for the image files under it; a path that is missing, or a folder without images,
becomes an error entry for that argument, so one bad argument does not stop a batch.
"""

from pathlib import Path

from crossmed.data.image_kinds import image_kind
from crossmed.errors import InputError

DESCRIPTION_FILE = "model.json"
ARRAY_SUFFIXES = (".npy", ".npz")
KNOWN = ".dcm, .nii, .nii.gz, .png, .jpg, .jpeg, .npy, .npz"


def model_description_path(path: str | Path) -> Path:
    """Return the model.json of an export folder, its model/ folder or the file itself; raise InputError when absent."""
    path = Path(path)
    if path.is_dir() and not (path / DESCRIPTION_FILE).is_file() and (path / "model" / DESCRIPTION_FILE).is_file():
        path = path / "model"  # models/export/ names its portable model folder
    description_path = path / DESCRIPTION_FILE if path.is_dir() else path
    if not description_path.is_file():
        raise InputError(description_path, "no exported model description; run the export stage (dvc repro export)")
    return description_path


def predictable(path: Path) -> bool:
    """True for a file name predict reads: an image kind or a .npy/.npz array."""
    return image_kind(path) is not None or path.suffix.lower() in ARRAY_SUFFIXES


def expand_inputs(arguments: list[str | Path]) -> list[tuple[Path, str | None]]:
    """Return (file, None) per file to predict, folders expanded to their image files (sorted, hidden ones skipped),
    and (argument, reason) for an argument that gives nothing to predict."""
    entries: list[tuple[Path, str | None]] = []
    for argument in map(Path, arguments):
        if argument.is_dir():
            found = sorted(p for p in argument.rglob("*") if p.is_file() and predictable(p)
                           and not any(part.startswith(".") for part in p.relative_to(argument).parts))
            entries += [(p, None) for p in found] or [(argument, f"no image files in this folder (known: {KNOWN})")]
        elif not argument.exists():
            entries.append((argument, "file not found"))
        elif not predictable(argument):
            entries.append((argument, f"unknown image type (known: {KNOWN})"))
        else:
            entries.append((argument, None))
    return entries
