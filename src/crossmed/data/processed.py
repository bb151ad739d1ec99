"""The processed dataset on disk: memory-mapped images.npy and labels.npy, manifest.csv, data card (JSON and Markdown)."""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.lib.format import open_memmap

from crossmed.data.task import Task
from crossmed.errors import InputError

IMAGES_FILE, LABELS_FILE, MANIFEST_FILE = "images.npy", "labels.npy", "manifest.csv"
DATA_CARD_FILE, DATA_CARD_MARKDOWN = "data_card.json", "data_card.md"
# Columns every source writes; subgroup columns (sex, age, ...) follow them.
MANIFEST_COLUMNS = ["index", "site", "patient_id", "image_id", "split", "label", "source_path", "source_shape",
                    "source_spacing_mm", "source_mean", "source_std", "content_hash"]


def create_image_array(folder: Path, count: int, shape: tuple[int, ...], name: str = IMAGES_FILE) -> np.memmap:
    """Return a new float32 (count, *shape) .npy array memory-mapped in `folder`, written as images arrive."""
    return open_memmap(folder / name, mode="w+", dtype=np.float32, shape=(count, *shape))


class SplitImages:
    """The images of one split, read from the memory map only when indexed (sequence of (C, *spatial) arrays)."""

    def __init__(self, images: np.ndarray, indices: np.ndarray):
        self.images, self.indices = images, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item):
        return np.array(self.images[self.indices[item]], dtype=np.float32)  # a private, writable copy

    @property
    def shape(self) -> tuple[int, ...]:
        """Return (N, C, *spatial) of the split."""
        return (len(self.indices), *self.images.shape[1:])


@dataclass
class Split:
    """One split: lazily read images, (N, label_columns) int64 labels and the manifest rows."""

    images: SplitImages
    labels: np.ndarray
    rows: pd.DataFrame


@dataclass
class ProcessedData:
    """Images (N, C, *spatial) float32 memory-mapped, labels, manifest, data card and the task."""

    images: np.ndarray
    labels: np.ndarray
    manifest: pd.DataFrame
    card: dict

    @property
    def task(self) -> Task:
        """Return the task recorded in the data card."""
        return Task.from_dict(self.card["task"])

    @classmethod
    def load(cls, folder: str | Path) -> "ProcessedData":
        """Return the processed dataset in `folder`; raise InputError naming the missing or inconsistent file."""
        folder = Path(folder)
        for name in (IMAGES_FILE, LABELS_FILE, MANIFEST_FILE, DATA_CARD_FILE):
            if not (folder / name).is_file():
                raise InputError(folder / name, "missing; run the preprocess stage first")
        images = np.load(folder / IMAGES_FILE, mmap_mode="r")  # larger-than-memory data stays on disk
        labels = np.load(folder / LABELS_FILE)
        manifest = pd.read_csv(folder / MANIFEST_FILE, dtype={"patient_id": str, "image_id": str, "site": str,
                                                              "label": str}, keep_default_na=False)
        if not len(manifest) == len(images) == len(labels):
            raise InputError(folder / MANIFEST_FILE, f"{len(manifest)} rows but {len(images)} images and {len(labels)} labels")
        card = json.loads((folder / DATA_CARD_FILE).read_text(encoding="utf-8"))
        return cls(images, labels, manifest, card)

    def split(self, name: str) -> Split:
        """Return one split (train, val, test or external_test); empty when the data has none."""
        rows = self.manifest[self.manifest["split"] == name]
        index = rows["index"].to_numpy(dtype=np.int64)
        return Split(SplitImages(self.images, index), self.labels[index], rows)


def data_fingerprint(folder: str | Path) -> str:
    """Return the SHA-256 over the processed dataset's files (names and contents): which data the model was trained on."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + b"\0")
            with path.open("rb") as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()
