"""MedMNIST v2 `.npz` files: what each subset holds, and a reader that refuses a file not matching its subset."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossmed.errors import ConfigError, InputError

SPLITS = ("train", "val", "test")
SIZES_2D, SIZES_3D = (28, 64, 128, 224), (28, 64)


@dataclass(frozen=True)
class Subset:
    """One MedMNIST v2 subset as the `medmnist` package describes it."""

    name: str
    task: str  # binary-class | multi-class | multi-label, binary-class | ordinal-regression
    n_labels: int  # classes, or label columns for multi-label
    channels: int
    spatial_dims: int

    @property
    def label_columns(self) -> int:
        """Return how many label columns the file holds per image."""
        return self.n_labels if self.task.startswith("multi-label") else 1


SUBSETS = {s.name: s for s in [
    Subset("pathmnist", "multi-class", 9, 3, 2), Subset("chestmnist", "multi-label, binary-class", 14, 1, 2),
    Subset("dermamnist", "multi-class", 7, 3, 2), Subset("octmnist", "multi-class", 4, 1, 2),
    Subset("pneumoniamnist", "binary-class", 2, 1, 2), Subset("retinamnist", "ordinal-regression", 5, 3, 2),
    Subset("breastmnist", "binary-class", 2, 1, 2), Subset("bloodmnist", "multi-class", 8, 3, 2),
    Subset("tissuemnist", "multi-class", 8, 1, 2), Subset("organamnist", "multi-class", 11, 1, 2),
    Subset("organcmnist", "multi-class", 11, 1, 2), Subset("organsmnist", "multi-class", 11, 1, 2),
    Subset("organmnist3d", "multi-class", 11, 1, 3), Subset("nodulemnist3d", "binary-class", 2, 1, 3),
    Subset("adrenalmnist3d", "binary-class", 2, 1, 3), Subset("fracturemnist3d", "multi-class", 3, 1, 3),
    Subset("vesselmnist3d", "binary-class", 2, 1, 3), Subset("synapsemnist3d", "binary-class", 2, 1, 3),
]}


def subset_info(name: str) -> Subset:
    """Return the subset called `name`; raise ConfigError listing the known ones otherwise."""
    if name not in SUBSETS:
        raise ConfigError("data.subset", f"unknown MedMNIST subset '{name}' (known: {', '.join(sorted(SUBSETS))})")
    return SUBSETS[name]


def official_file_name(name: str, size: int) -> str:
    """Return the file name the MedMNIST package uses for a subset and size (e.g. breastmnist_64.npz)."""
    subset = subset_info(name)
    sizes = SIZES_3D if subset.spatial_dims == 3 else SIZES_2D
    if size not in sizes:
        raise ConfigError("data.size", f"{name} comes in sizes {list(sizes)}, not {size}")
    return f"{name}.npz" if size == 28 else f"{name}_{size}.npz"


@dataclass
class MedMNISTSplits:
    """Images as (N, C, *spatial) uint8 and labels as (N, label_columns) per official split."""

    subset: Subset
    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]

    @property
    def size(self) -> int:
        """Return the edge length of the images in pixels."""
        return int(self.images["train"].shape[-1])


def _check_images(path: Path, split: str, images: np.ndarray, subset: Subset) -> np.ndarray:
    """Return images as (N, C, *spatial), or raise InputError saying how their shape differs from the subset's."""
    spatial = subset.spatial_dims
    if subset.channels == 1 and images.ndim == 1 + spatial:
        images = images[:, None]
    elif subset.channels > 1 and images.ndim == 2 + spatial and images.shape[-1] == subset.channels:
        images = np.moveaxis(images, -1, 1)
    else:
        expected = f"(N, {', '.join(['S'] * spatial)}{', ' + str(subset.channels) if subset.channels > 1 else ''})"
        raise InputError(path, f"{split}_images has shape {images.shape}; {subset.name} needs {expected}")
    edges = set(images.shape[2:])
    allowed = SIZES_3D if spatial == 3 else SIZES_2D
    if len(edges) != 1 or edges.pop() not in allowed:
        raise InputError(path, f"{split}_images has spatial shape {images.shape[2:]}; {subset.name} comes in sizes {list(allowed)}")
    return images


def _check_labels(path: Path, split: str, labels: np.ndarray, subset: Subset, n_images: int) -> np.ndarray:
    """Return labels as (N, label_columns) int64, or raise InputError saying what is out of range."""
    if labels.ndim == 1:
        labels = labels[:, None]
    if labels.shape != (n_images, subset.label_columns):
        raise InputError(path, f"{split}_labels has shape {labels.shape}; expected ({n_images}, {subset.label_columns})")
    top = 1 if subset.task.startswith("multi-label") else subset.n_labels - 1
    if labels.size and (labels.min() < 0 or labels.max() > top):
        raise InputError(path, f"{split}_labels range {int(labels.min())}..{int(labels.max())} is outside 0..{top} "
                               f"of {subset.name} ({subset.task})")
    return labels.astype(np.int64)


def load_medmnist(path: str | Path, subset_name: str) -> MedMNISTSplits:
    """Return the official splits of a MedMNIST `.npz` file after checking it against its subset."""
    subset = subset_info(subset_name)
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"not found; download {official_file_name(subset_name, 28)} (or a larger size) from "
                               "https://zenodo.org/records/10519652 and pass its path as data.path")
    try:
        archive = np.load(path)
    except (OSError, ValueError) as err:
        raise InputError(path, f"not a readable .npz file ({err})") from err
    with archive:
        expected = {f"{s}_{kind}" for s in SPLITS for kind in ("images", "labels")}
        missing = sorted(expected - set(archive.files))
        if missing:
            raise InputError(path, f"missing arrays {missing} (has {sorted(archive.files)}); is this a MedMNIST file?")
        images, labels = {}, {}
        for split in SPLITS:
            images[split] = _check_images(path, split, archive[f"{split}_images"], subset)
            labels[split] = _check_labels(path, split, archive[f"{split}_labels"], subset, len(images[split]))
    sizes = {split: images[split].shape[2:] for split in SPLITS}
    if len(set(sizes.values())) != 1:
        raise InputError(path, f"splits differ in image size: {sizes}")
    return MedMNISTSplits(subset, images, labels)
