"""Turn de-identified site folders into one processed dataset: common grid, patient-level split, data card."""

import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from crossmed.data.dicom_images import read_dicom_image
from crossmed.data.image_transforms import to_common_grid
from crossmed.data.processed import DATA_CARD_FILE, IMAGES_FILE, MANIFEST_COLUMNS, MANIFEST_FILE
from crossmed.data.split import assign_splits, check_leakage, split_counts
from crossmed.errors import InputError
from crossmed.files import atomic_directory, write_json_atomic

log = logging.getLogger("crossmed.preprocess")
PROGRESS_EVERY = 100


def read_site_labels(site_dir: Path) -> pd.DataFrame:
    """Return a site's labels.csv indexed by SOP Instance UID; raise InputError naming the file when unusable."""
    path = site_dir / "labels.csv"
    if not path.is_file():
        raise InputError(path, "labels table not found")
    labels = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"patient_id", "sop_instance_uid", "finding"} - set(labels.columns)
    if missing:
        raise InputError(path, f"missing column(s) {sorted(missing)}")
    bad = ~labels["finding"].isin(["0", "1"])
    if bad.any():
        raise InputError(path, f"'finding' must be 0 or 1; row {int(np.flatnonzero(bad)[0]) + 2} has {labels['finding'][bad].iloc[0]!r}")
    return labels.set_index("sop_instance_uid")


def _site_rows(site: str, site_dir: Path, image_size: int, spacing_mm: float, images: list, hashes: list) -> list[dict]:
    labels = read_site_labels(site_dir)
    files = sorted(site_dir.rglob("*.dcm"))
    if not files:
        raise InputError(site_dir, "no .dcm files")
    rows = []
    for number, path in enumerate(files, 1):
        image = read_dicom_image(path)
        if image.sop_instance_uid not in labels.index:
            raise InputError(path, f"SOP Instance UID {image.sop_instance_uid} has no row in {site_dir / 'labels.csv'}")
        label_row = labels.loc[image.sop_instance_uid]
        if label_row["patient_id"] != image.patient_id:
            raise InputError(path, f"PatientID {image.patient_id} differs from labels.csv ({label_row['patient_id']})")
        array = to_common_grid(image.pixels, image.spacing_mm, spacing_mm, image_size)
        hashes.append(hashlib.sha1(image.pixels.tobytes()).hexdigest())
        images.append(array)
        rows.append({"site": site, "patient_id": image.patient_id, "study_uid": image.study_uid,
                     "sop_instance_uid": image.sop_instance_uid, "label": int(label_row["finding"]),
                     "sex": label_row.get("sex", ""), "age": label_row.get("age", ""),
                     "source_path": path.relative_to(site_dir.parent).as_posix(), "source_rows": image.pixels.shape[0],
                     "source_spacing_mm": image.spacing_mm[0]})
        if number % PROGRESS_EVERY == 0:
            log.info("site %s: %d/%d images preprocessed", site, number, len(files))
    log.info("site %s: read %d images and %s", site, len(files), site_dir / "labels.csv")
    return rows


def data_card(manifest: pd.DataFrame, image_size: int, spacing_mm: float, external_sites: list[str]) -> dict:
    """Return the data card: what went in, how it was split, and the per-site make-up."""
    sites = {}
    for site, rows in manifest.groupby("site"):
        ages = pd.to_numeric(rows["age"], errors="coerce")
        sites[site] = {"images": int(len(rows)), "patients": int(rows["patient_id"].nunique()),
                       "prevalence": round(float(rows["label"].mean()), 4),
                       "sex": {k: int(v) for k, v in rows.drop_duplicates("patient_id")["sex"].value_counts().items()},
                       "age_range": [int(ages.min()), int(ages.max())] if ages.notna().any() else None,
                       "source_rows": sorted(int(r) for r in rows["source_rows"].unique()),
                       "source_spacing_mm": sorted(float(s) for s in rows["source_spacing_mm"].unique())}
    return {"images": int(len(manifest)), "image_shape": [1, image_size, image_size], "spacing_mm": spacing_mm,
            "intensity": "z-score per image after the modality LUT", "external_sites": list(external_sites),
            "splits": split_counts(manifest), "sites": sites, "leakage_check": "passed"}


def preprocess_study(deid_dir: str | Path, out_dir: str | Path, sites: list[str], external_sites: list[str],
                     image_size: int, spacing_mm: float, val_fraction: float, test_fraction: float, seed: int) -> dict:
    """Write images.npy, manifest.csv and data_card.json for `sites` under `out_dir`; return the data card."""
    deid_dir, out_dir = Path(deid_dir), Path(out_dir)
    started = time.perf_counter()
    images, hashes, rows = [], [], []
    for site in sites:
        site_dir = deid_dir / site
        if not site_dir.is_dir():
            raise InputError(site_dir, f"no de-identified folder for site {site}")
        rows += _site_rows(site, site_dir, image_size, spacing_mm, images, hashes)
    manifest = pd.DataFrame(rows)
    manifest.insert(0, "index", np.arange(len(manifest)))
    manifest["split"] = assign_splits(manifest, external_sites, val_fraction, test_fraction, seed)
    check_leakage(manifest, hashes)
    card = data_card(manifest, image_size, spacing_mm, external_sites)
    with atomic_directory(out_dir) as tmp:
        np.save(tmp / IMAGES_FILE, np.stack(images).astype(np.float32))
        manifest[MANIFEST_COLUMNS].to_csv(tmp / MANIFEST_FILE, index=False)
        write_json_atomic(tmp / DATA_CARD_FILE, card)
    log.info("wrote %d images (%s) to %s in %.1f s", len(manifest),
             ", ".join(f"{k}={sum(v['images'] for v in s.values())}" for k, s in card["splits"].items()), out_dir,
             time.perf_counter() - started)
    return card
