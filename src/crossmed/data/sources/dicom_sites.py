"""The de-identified DICOM sites of the built-in study: one folder per site with a labels.csv."""

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom

from crossmed.data.dicom_images import acquisition_device
from crossmed.data.sources import SourceTable, label_strings
from crossmed.data.task import Task
from crossmed.errors import InputError

log = logging.getLogger("crossmed.preprocess")
SUBGROUPS = ["sex", "age", "device"]  # device: Manufacturer and model from the DICOM header
# Where the finding is, in the DICOM image's pixels (the built-in cohort knows; preprocess maps it onto the grid).
SOURCE_FINDING_COLUMNS = ("finding_row", "finding_col", "finding_radius")


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


def _site_rows(site: str, site_dir: Path, problems: list[str]) -> list[dict]:
    labels = read_site_labels(site_dir)
    files = sorted(site_dir.rglob("*.dcm"))
    if not files:
        raise InputError(site_dir, "no .dcm files")
    rows = []
    for path in files:
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
            uid, patient, device = str(header.SOPInstanceUID), str(header.get("PatientID", "")), acquisition_device(header)
        except Exception as err:  # damaged files fail in many ways inside pydicom
            problems.append(f"{path}: unreadable DICOM ({type(err).__name__}: {err})")
            continue
        if uid not in labels.index:
            problems.append(f"{path}: SOP Instance UID {uid} has no row in {site_dir / 'labels.csv'}")
            continue
        row = labels.loc[uid]
        if row["patient_id"] != patient:
            problems.append(f"{path}: PatientID {patient} differs from labels.csv ({row['patient_id']})")
            continue
        rows.append({"site": site, "patient_id": patient, "image_id": uid, "finding": int(row["finding"]), "split": "",
                     "source_path": path.relative_to(site_dir.parent).as_posix(), "path": str(path),
                     "sex": row.get("sex", ""), "age": row.get("age", ""), "device": device,
                     **{column: row[column] for column in SOURCE_FINDING_COLUMNS if column in row}})
    log.info("site %s: %d DICOM files and %s", site, len(files), site_dir / "labels.csv")
    return rows


def dicom_sites_table(deid_dir: str | Path, sites: list[str], classes: list[str]) -> tuple[SourceTable, list[str]]:
    """Return the images of every site's de-identified folder with their labels, and the problems found."""
    deid_dir = Path(deid_dir)
    rows, problems = [], []
    for site in sites:
        site_dir = deid_dir / site
        if not site_dir.is_dir():
            raise InputError(site_dir, f"no de-identified folder for site {site}")
        rows += _site_rows(site, site_dir, problems)
    table = pd.DataFrame(rows)
    labels = table["finding"].to_numpy(dtype=np.int64)[:, None] if len(table) else np.zeros((0, 1), np.int64)
    table = table.drop(columns="finding").assign(label=label_strings(labels))
    task = Task("binary", tuple(classes), channels=1, spatial_dims=2)
    return SourceTable(table, labels, task, SUBGROUPS, {"type": "dicom_sites", "folder": str(deid_dir), "sites": list(sites)}), problems
