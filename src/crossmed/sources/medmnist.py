"""data.source=medmnist: a MedMNIST v2 `.npz` file, with official splits, task and class names from the subset.

Acquire fetches the official file when data.path is missing and data.fetch is on; the images are published
de-identified, so de-identify only records that; read scales (and resizes) the arrays into the processed format.
"""

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from monai.transforms import Resize

from crossmed.data.recipe import Recipe
from crossmed.data.task import Task
from crossmed.sources.base import DataSource, SourceTable, check_path, label_strings
from crossmed.sources.medmnist_files import SPLITS, MedMNISTSplits, fetch_medmnist, file_md5, load_medmnist

log = logging.getLogger("crossmed.preprocess")
CHUNK = 4096


def medmnist_table(path: str, subset: str, size: int) -> tuple[SourceTable, MedMNISTSplits]:
    """Return one row per image of the file (each image its own patient: MedMNIST publishes no patient IDs)."""
    data = load_medmnist(path, subset, size)
    info = data.subset
    rows, labels = [], []
    for split in SPLITS:
        for i in range(len(data.images[split])):
            rows.append({"site": subset, "patient_id": f"{split}-{i:06d}", "image_id": f"{split}-{i:06d}",
                         "split": split, "source_path": f"{split}_images[{i}]"})
        labels.append(data.labels[split])
    labels = np.concatenate(labels)
    table = pd.DataFrame(rows).assign(label=label_strings(labels))
    md5 = file_md5(path)
    published = info.md5.get(size)
    description = {"type": "medmnist", "name": subset, "file": str(path), "size": size, "md5": md5,
                   "official_md5": "match" if md5 == published else f"differs (published {published})",
                   "splits": "official", "patient_ids": "not published; each image counted as its own patient"}
    if md5 != published:
        log.warning("%s: MD5 %s differs from the published %s for %s at %d px", path, md5, published, subset, size)
    task = Task(info.task_type, info.classes, info.channels, info.spatial_dims)
    log.info("read %s (%s, %s): %s", path, subset, info.task, {s: len(data.images[s]) for s in SPLITS})
    return SourceTable(table, labels, task, [], description), data


def medmnist_preprocessing(size: int, image_size: int, spatial_dims: int) -> list[str]:
    """Return the preprocessing steps applied to MedMNIST images, for the data card and the exported model."""
    steps = [f"MedMNIST uint8 image of {size} px per edge, channels first"]
    if image_size != size:
        steps.append(f"resize to {image_size} px per edge ({'area' if image_size < size else 'trilinear' if spatial_dims == 3 else 'bilinear'})")
    return steps + ["scale intensities to [-1, 1] (x / 127.5 - 1), as in the MedMNIST v2 paper"]


def fill_medmnist(data: MedMNISTSplits, out: np.ndarray, image_size: int) -> list[dict]:
    """Write every split's images, scaled to [-1, 1] (resized when asked), into `out`; return source facts per image."""
    facts, position = [], 0
    size = data.size
    mode = "area" if image_size < size else ("trilinear" if data.subset.spatial_dims == 3 else "bilinear")
    resize = Resize(spatial_size=(image_size,) * data.subset.spatial_dims, mode=mode) if image_size != size else None
    shape = "x".join([str(size)] * data.subset.spatial_dims)
    for split in SPLITS:
        images = data.images[split]
        for start in range(0, len(images), CHUNK):
            chunk = images[start:start + CHUNK]
            scaled = chunk.astype(np.float32) / 127.5 - 1.0
            if resize is not None:
                scaled = np.stack([np.asarray(resize(torch.as_tensor(x))) for x in scaled])
            out[position:position + len(chunk)] = scaled
            position += len(chunk)
            axes = tuple(range(1, chunk.ndim))
            means, stds = chunk.mean(axis=axes), chunk.std(axis=axes)
            facts += [{"source_shape": shape, "source_spacing_mm": "", "source_mean": round(float(m), 4),
                       "source_std": round(float(s), 4), "content_hash": hashlib.sha1(x.tobytes()).hexdigest()}
                      for x, m, s in zip(chunk, means, stds)]
        log.info("preprocess: %s: %d MedMNIST images", split, len(images))
    return facts


class MedMNISTSource(DataSource):
    """A MedMNIST v2 file named by data.path (data.subset at data.size px)."""

    name = "medmnist"
    format = "a MedMNIST file"

    def acquire(self, cfg) -> None:
        """Fetch the official file to data.path when it is missing and data.fetch is on; then leave a note in paths.raw."""
        if cfg.data.get("fetch") and not Path(cfg.data.path).is_file():
            fetch_medmnist(str(cfg.data.subset), int(cfg.data.size), cfg.data.path)
        super().acquire(cfg)

    def check_input(self, cfg) -> None:
        """Raise InputError unless data.path is a file."""
        check_path(cfg, "a MedMNIST .npz file", Path.is_file)

    def read(self, cfg, deid_dir: Path):
        """Read data.path's images and labels; the fill scales them to [-1, 1] and resizes to data.image_size."""
        data = cfg.data
        table, arrays = medmnist_table(str(data.path), str(data.subset), int(data.size))
        size = int(data.image_size or data.size)
        table.preprocessing = medmnist_preprocessing(int(data.size), size, table.task.spatial_dims)
        table.recipe = Recipe("medmnist", table.task.channels, table.task.spatial_dims, size, source_size=int(data.size)).as_dict()
        return table, (table.task.channels, *(size,) * table.task.spatial_dims), lambda out: (fill_medmnist(arrays, out, size), [])


SOURCE = MedMNISTSource()
