"""The processed dataset on disk: images.npy, manifest.csv and data_card.json in one folder."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crossmed.errors import InputError

IMAGES_FILE, MANIFEST_FILE, DATA_CARD_FILE = "images.npy", "manifest.csv", "data_card.json"
MANIFEST_COLUMNS = ["index", "site", "patient_id", "study_uid", "sop_instance_uid", "split", "label", "sex", "age",
                    "source_path", "source_rows", "source_spacing_mm"]


@dataclass
class ProcessedData:
    """Images (N, 1, H, W) float32 and the manifest row of each."""

    images: np.ndarray
    manifest: pd.DataFrame
    card: dict

    @classmethod
    def load(cls, folder: str | Path) -> "ProcessedData":
        """Return the processed dataset in `folder`; raise InputError naming the missing or inconsistent file."""
        folder = Path(folder)
        for name in (IMAGES_FILE, MANIFEST_FILE, DATA_CARD_FILE):
            if not (folder / name).is_file():
                raise InputError(folder / name, "missing; run the preprocess stage first")
        images = np.load(folder / IMAGES_FILE)
        manifest = pd.read_csv(folder / MANIFEST_FILE, dtype={"patient_id": str, "sop_instance_uid": str})
        if len(manifest) != len(images):
            raise InputError(folder / MANIFEST_FILE, f"{len(manifest)} rows but {len(images)} images in {IMAGES_FILE}")
        card = json.loads((folder / DATA_CARD_FILE).read_text(encoding="utf-8"))
        return cls(images, manifest, card)

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
        """Return (images, labels, manifest rows) of one split."""
        rows = self.manifest[self.manifest["split"] == name]
        index = rows["index"].to_numpy()
        return self.images[index], np.array(rows["label"], dtype=np.int64), rows
