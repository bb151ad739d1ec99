"""data.source=synthetic: the built-in cohort, as site folders of DICOM files with a labels.csv each.

Acquire writes the cohort (with PHI planted in every place a hospital's files carry it) and the sites' demo keys;
de-identify rewrites each site's DICOM tree and clinical table; read takes the de-identified sites onto the grid.
"""

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom

from crossmed.data.dicom_images import acquisition_device
from crossmed.data.task import Task
from crossmed.data.findings import SOURCE_FINDING_COLUMNS
from crossmed.deid.keys import load_key
from crossmed.deid.settings import settings_from_config
from crossmed.deid.tabular import deidentify_table
from crossmed.deid.tree import deidentify_tree
from crossmed.errors import InputError, report_problems
from crossmed.files import atomic_directory, write_json_atomic
from crossmed.site_codes import check_site_code
from crossmed.sources.base import DEID_SUMMARY_FILE, DataSource, SourceTable, label_strings, read_files_onto_grid

log = logging.getLogger("crossmed.preprocess")
SUBGROUPS = ["sex", "age", "device"]  # device: Manufacturer and model from the DICOM header


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


def deidentify_study(raw_dir: str | Path, out_dir: str | Path, sites: list[str], deid_cfg) -> dict:
    """Write `<out_dir>/<SITE>/` (DICOM tree, audit.csv, rejected.csv, labels.csv) for each site; return per-site summaries."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    for site in sites:
        check_site_code(site, "study.sites")
    summaries = {}
    with atomic_directory(out_dir) as tmp:
        for site in sites:
            site_raw = raw_dir / site
            if not (site_raw / "dicom").is_dir():
                raise InputError(site_raw / "dicom", f"no DICOM folder for site {site}")
            key = load_key(Path(deid_cfg.key_dir) / f"{site}.key")
            settings = settings_from_config(deid_cfg, key, f"{site}-")
            summary = deidentify_tree(site_raw / "dicom", tmp / site, settings,
                                      site_records=Path(deid_cfg.site_records) / site)
            tab = deid_cfg.tabular
            deidentify_table(site_raw / "labels.csv", tmp / site / "labels.csv", settings.pseudonymizer(), tab.id_column,
                             tuple(tab.keep_columns), tuple(tab.name_columns), tab.age_column,
                             uid_columns=tuple(tab.uid_columns), date_columns=tuple(tab.date_columns))
            # Seconds stay in the log: the stage's output must be identical when its inputs are.
            summaries[site] = {k: v for k, v in summary.as_dict().items() if k != "seconds"}
        write_json_atomic(tmp / DEID_SUMMARY_FILE, {"profile": deid_cfg.profile, "options": list(deid_cfg.options),
                                                     "sites": summaries})
    logging.getLogger("crossmed.deidentify").info("de-identified sites %s into %s: %s", sites, out_dir, json.dumps({s: (v["written"], v["rejected"]) for s, v in summaries.items()}))
    return summaries


class SyntheticSource(DataSource):
    """The built-in two-country cohort: synthesized, de-identified and read by crossmed itself."""

    name = "synthetic"
    format = "DICOM files, one folder per site"
    synthetic = True

    def acquire(self, cfg) -> None:
        """Write every site's DICOM files and labels to paths.raw, and the sites' demo keys to data.key_dir."""
        from crossmed.synthetic.cohort import CohortSpec, write_cohort

        write_cohort(CohortSpec.from_config(cfg.data.synthetic), cfg.paths.raw, cfg.data.key_dir)

    def deidentify(self, cfg) -> dict:
        """De-identify each site of study.sites from paths.raw into paths.deidentified."""
        return deidentify_study(cfg.paths.raw, cfg.paths.deidentified, list(cfg.study.sites), cfg.deid)

    def read(self, cfg, deid_dir: Path):
        """Read the de-identified sites of study.sites and bring their images onto the grid of data.image_size."""
        table, problems = dicom_sites_table(deid_dir, list(cfg.study.sites), list(cfg.study.classes))
        report_problems(deid_dir, problems)
        return read_files_onto_grid(cfg, table)


SOURCE = SyntheticSource()
