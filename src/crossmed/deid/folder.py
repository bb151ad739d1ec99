"""De-identify a folder study: DICOM through the PS3.15 profile, other images re-written from their pixels, manifest pseudonymised.

Output names are pseudonymous references (hospital export paths hold names and IDs); the manifest keeps
only the configured columns; refused files are reported by manifest row, and which source file each was
goes only to the site-only record.
"""

import logging
from pathlib import Path

import pandas as pd

from crossmed.data.image_files import image_kind, unreadable_reason
from crossmed.errors import report_problems
from crossmed.data.manifest import ManifestSpec, manifest_problems, read_manifest
from crossmed.deid.image_rewrite import rewrite_image
from crossmed.deid.keys import load_key
from crossmed.deid.settings import DeidSettings, settings_from_config
from crossmed.deid.text_scan import contains_identifiers
from crossmed.deid.tree import deidentify_files
from crossmed.errors import ConfigError, InputError
from crossmed.files import atomic_path, spreadsheet_safe
from crossmed.site_codes import check_site_code

log = logging.getLogger("crossmed.deidentify")
OLDEST_AGE = 90


def _deidentify_site_dicom(site: str, rows: dict[int, str], folder: Path, out: Path, settings: DeidSettings,
                           site_records: Path, problems: list[str]) -> dict[int, str]:
    """De-identify one site's DICOM rows; return the output path (relative to `out`) of each manifest row written."""
    jobs = [(folder / name, name) for name in rows.values()]
    summary = deidentify_files(jobs, out / "dicom" / site, settings, site_records=site_records)
    row_of = {name: row for row, name in rows.items()}
    for name, refusal in summary.refusals.items():
        problems.append(f"row {row_of[name] + 2} ({settings.pseudonymizer().source_reference(name)}): refused by "
                        f"de-identification: {refusal.public_reason}")
    log.info("site %s: %d DICOM files de-identified, %d refused", site, summary.written, summary.rejected)
    return {row: f"dicom/{site}/{summary.outputs[name]}" for row, name in rows.items() if name in summary.outputs}


def _rewrite(folder: Path, name: str, out: Path, site: str, settings: DeidSettings) -> str:
    """Re-write a PNG/JPEG/NIfTI image from its pixels under a pseudonymous name; return its path relative to `out`."""
    reference = settings.pseudonymizer().source_reference(name)
    written = rewrite_image(folder / name, out / "files" / site / reference, max_pixels=settings.limits.max_pixels)
    return written.relative_to(out).as_posix()


def _without_path(reason: str, folder: Path, name: str) -> str:
    """Return a library's message with the source path taken out (a raw export's paths hold names and IDs)."""
    return reason.replace(str(folder / name), "the file").replace(name, "the file")


def _rewrite_row(folder: Path, table: pd.DataFrame, row: int, spec: ManifestSpec, out: Path, site: str,
                 settings: DeidSettings, problems: list[str]) -> str:
    """Re-write one manifest row's image; a refusal joins the problems by row number, without the source path."""
    name = table.at[row, spec.image]
    try:
        return _rewrite(folder, name, out, site, settings)
    except InputError as err:
        problems.append(f"row {list(table.index).index(row) + 2}: {_without_path(err.reason, folder, name)}")
        return ""


def subgroup_values(values: pd.Series, patients: pd.Series, raw_ids: pd.Series) -> list[str]:
    """Return a subgroup column fit to share: a category several patients have; a cell holding an identifier (its
    row's own ID, a national ID, a phone ...) or a value only one patient has becomes unknown ('')."""
    text = values.astype(str).str.strip()
    holders = pd.Series(patients.to_numpy()).groupby(text.to_numpy()).nunique()
    return [value if value and holders.get(value, 0) >= 2 and not contains_identifiers(value, [raw_id]) else ""
            for value, raw_id in zip(text, raw_ids)]


def _check_sites(manifest_path: Path, table: pd.DataFrame, spec: ManifestSpec) -> None:
    for number, site in enumerate(table[spec.site], start=2):
        if site.strip():
            check_site_code(site, f"{manifest_path} row {number}, column '{spec.site}'")


def check_folder_name(folder: Path) -> None:
    """Refuse a study folder whose path looks like it holds an identifier: dvc.lock and params.yaml record it."""
    # Dates and national IDs are looked for across the whole path (exports/2024/03/13); ID-like words within one
    # folder name, since an ID never spans a '/' and words joined across folders (run-100/scan_3d0) are no ID.
    kinds = [kind for kind in contains_identifiers(str(folder), ()) if kind != "id_number"]
    kinds += [kind for part in Path(folder).parts for kind in contains_identifiers(part, ()) if kind == "id_number"]
    if kinds:
        raise ConfigError("data.path", f"the path looks like it holds an identifier ({', '.join(sorted(set(kinds)))}); "
                                       "dvc.lock and params.yaml record it and are shared: give the folder a neutral name "
                                       "(or link one to it)")


def deidentify_folder(folder: str | Path, out_dir: Path, data_cfg, deid_cfg) -> dict:
    """Write `out_dir`/manifest.csv with pseudonymous patients and the images it names; return a summary per site."""
    folder = Path(folder)
    check_folder_name(folder)
    spec = ManifestSpec.from_config(data_cfg)
    manifest_path = folder / str(data_cfg.manifest)
    table = read_manifest(manifest_path, spec)
    if table.empty:
        raise InputError(manifest_path, "manifest has no rows")
    _check_sites(manifest_path, table, spec)
    _, problems = manifest_problems(table, spec, folder, show_values=False)  # raw paths hold names: rows only
    for number, name in enumerate(table[spec.image], start=2):
        if image_kind(name) in ("png", "jpeg", "nifti") and (folder / name).is_file():
            reason = unreadable_reason(folder / name)
            if reason:
                problems.append(f"row {number}: {_without_path(reason, folder, name)}")
    summary = {}
    raw_ids = table[spec.patient_id].copy()
    table["_out"] = ""
    for site, rows in table.groupby(spec.site, sort=True):
        if problems:  # still de-identify the DICOM files, so their refusals are reported in the same message
            rows = rows[[image_kind(n) == "dicom" and (folder / n).is_file() for n in rows[spec.image]]]
        settings = settings_from_config(deid_cfg, load_key(Path(deid_cfg.key_dir) / f"{site}.key"), f"{site}-")
        dicom = {i: rows.at[i, spec.image] for i in rows.index if image_kind(rows.at[i, spec.image]) == "dicom"}
        written = (_deidentify_site_dicom(site, dicom, folder, out_dir, settings, Path(deid_cfg.site_records) / site, problems)
                   if dicom else {})
        for i in rows.index:
            if not problems:
                table.at[i, "_out"] = written.get(i, "") if i in dicom else _rewrite_row(folder, table, i, spec, out_dir,
                                                                                         site, settings, problems)
        table.loc[rows.index, spec.patient_id] = [settings.pseudonymizer().patient_id(v) for v in rows[spec.patient_id]]
        summary[site] = {"images": int(len(rows)), "dicom_deidentified": len(written),
                         "other_images_rewritten": len(rows) - len(dicom)}
    report_problems(manifest_path, problems)
    table[spec.image] = table.pop("_out")
    if "age" in spec.subgroups:  # ages over 89 are grouped (PS3.15 / HIPAA); non-numbers become unknown
        ages = pd.to_numeric(table["age"], errors="coerce")
        table["age"] = [str(min(int(a), OLDEST_AGE)) if pd.notna(a) else "" for a in ages]
    for column in (c for c in spec.subgroups if c != "age"):  # ages are numbers already grouped; the rest are categories
        table[column] = subgroup_values(table[column], table[spec.patient_id], raw_ids)
    keep = list(dict.fromkeys([*spec.required, *spec.subgroups]))  # other columns may identify; they stay on site
    with atomic_path(out_dir / "manifest.csv") as tmp:
        table[keep].map(spreadsheet_safe).to_csv(tmp, index=False)
    log.info("pseudonymised %s: %d rows, kept columns %s", manifest_path, len(table), keep)
    return summary
