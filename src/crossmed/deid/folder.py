"""De-identify a folder study: DICOM through the PS3.15 profile, other images copied under neutral names, manifest pseudonymised."""

import csv
import hashlib
import logging
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from crossmed.data.image_files import image_kind, unreadable_reason
from crossmed.data.image_pipeline import report_problems
from crossmed.data.sources.folder import ManifestSpec, manifest_problems, read_manifest
from crossmed.deid.keys import load_key
from crossmed.deid.profile import Profile
from crossmed.deid.pseudonyms import Pseudonymizer
from crossmed.deid.tree import deidentify_tree
from crossmed.errors import InputError
from crossmed.files import atomic_path

log = logging.getLogger("crossmed.deidentify")
OLDEST_AGE = 90


def _deidentify_site_dicom(site: str, sources: dict[int, Path], out: Path, key: bytes, profile: Profile, deid_cfg,
                           problems: list[str]) -> dict[int, str]:
    """De-identify one site's DICOM rows; return the output path (relative to `out`) of each manifest row."""
    with tempfile.TemporaryDirectory(prefix="crossmed-deid-") as tmp:
        links = Path(tmp) / "src"
        links.mkdir()
        for row, source in sources.items():
            (links / f"row{row:07d}.dcm").symlink_to(source.resolve())
        mapping_file = Path(tmp) / "mapping.csv"  # real IDs: read here, deleted with the folder
        summary = deidentify_tree(links, out / "dicom" / site, key, profile, patient_prefix=f"{site}-",
                                  allow_burned_in=bool(deid_cfg.allow_burned_in),
                                  max_date_shift_days=int(deid_cfg.max_date_shift_days), mapping_out=mapping_file,
                                  workers=int(deid_cfg.workers))
        with open(mapping_file, newline="", encoding="utf-8") as fh:
            written = {int(r["source_path"][3:10]): f"dicom/{site}/{r['output_path']}" for r in csv.DictReader(fh)}
        with open(out / "dicom" / site / "rejected.csv", newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                problems.append(f"{sources[int(r['path'][3:10])]}: refused by de-identification: {r['reason']}")
    log.info("site %s: %d DICOM files de-identified, %d refused", site, summary.written, summary.rejected)
    return written


def _copy_neutral(source: Path, out: Path, site: str) -> str:
    """Copy a non-DICOM image under a content-derived name (source paths often hold names or IDs); return its path."""
    digest = hashlib.sha1(source.read_bytes()).hexdigest()[:20]
    suffix = ".nii.gz" if source.name.lower().endswith(".nii.gz") else source.suffix.lower()
    relative = f"files/{site}/{digest}{suffix}"
    target = out / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return relative


def deidentify_folder(folder: str | Path, out_dir: Path, data_cfg, deid_cfg, profile: Profile) -> dict:
    """Write `out_dir`/manifest.csv with pseudonymous patients and the images it names; return a summary per site."""
    folder = Path(folder)
    spec = ManifestSpec.from_config(data_cfg)
    manifest_path = folder / str(data_cfg.manifest)
    table = read_manifest(manifest_path, spec)
    if table.empty:
        raise InputError(manifest_path, "manifest has no rows")
    _, problems = manifest_problems(table, spec, folder)
    for number, name in enumerate(table[spec.image], start=2):
        if image_kind(name) in ("png", "jpeg", "nifti") and (folder / name).is_file():
            reason = unreadable_reason(folder / name)
            if reason:
                problems.append(f"row {number} ({name}): {reason}")
    summary = {}
    table["_out"] = ""
    for site, rows in table.groupby(spec.site, sort=True):
        if problems:  # still de-identify the DICOM files, so their refusals are reported in the same message
            rows = rows[[image_kind(n) == "dicom" and (folder / n).is_file() for n in rows[spec.image]]]
        key = load_key(Path(deid_cfg.key_dir) / f"{site}.key")
        pseudonyms = Pseudonymizer(key, f"{site}-", int(deid_cfg.max_date_shift_days))
        dicom = {i: folder / rows.at[i, spec.image] for i in rows.index if image_kind(rows.at[i, spec.image]) == "dicom"}
        written = _deidentify_site_dicom(site, dicom, out_dir, key, profile, deid_cfg, problems) if dicom else {}
        for i in rows.index:
            if not problems:
                table.at[i, "_out"] = written.get(i, "") if i in dicom else _copy_neutral(folder / rows.at[i, spec.image], out_dir, site)
        table.loc[rows.index, spec.patient_id] = [pseudonyms.patient_id(v) for v in rows[spec.patient_id]]
        summary[site] = {"images": int(len(rows)), "dicom_deidentified": len(written), "other_images_copied": len(rows) - len(dicom)}
    report_problems(manifest_path, problems)
    table[spec.image] = table.pop("_out")
    if "age" in spec.subgroups:  # ages over 89 are grouped (PS3.15 / HIPAA); non-numbers become unknown
        ages = pd.to_numeric(table["age"], errors="coerce")
        table["age"] = [str(min(int(a), OLDEST_AGE)) if pd.notna(a) else "" for a in ages]
    keep = list(dict.fromkeys([*spec.required, *spec.subgroups]))  # other columns may identify; they stay on site
    with atomic_path(out_dir / "manifest.csv") as tmp:
        table[keep].to_csv(tmp, index=False)
    log.info("pseudonymised %s: %d rows, kept columns %s", manifest_path, len(table), keep)
    return summary
