"""De-identify every site of a study: DICOM tree and clinical table per site, into one output folder."""

import json
import logging
from pathlib import Path

from crossmed.deid.folder import deidentify_folder
from crossmed.deid.keys import load_key
from crossmed.deid.settings import settings_from_config
from crossmed.deid.tabular import deidentify_table
from crossmed.deid.tree import deidentify_tree
from crossmed.errors import InputError
from crossmed.files import atomic_directory, write_json_atomic
from crossmed.site_codes import check_site_code

log = logging.getLogger("crossmed.deidentify")
SUMMARY_FILE = "deid_summary.json"


def deidentify_source(cfg) -> dict:
    """De-identify what data.source brings: site DICOM trees, a folder with its manifest, or nothing (MedMNIST)."""
    out_dir = Path(cfg.paths.deidentified)
    if cfg.data.source == "synthetic":
        return deidentify_study(cfg.paths.raw, out_dir, list(cfg.study.sites), cfg.deid)
    settings_from_config(cfg.deid, b"\0" * 32, "")  # refuse bad settings before anything is read
    with atomic_directory(out_dir) as tmp:
        if cfg.data.source == "folder":
            summary = deidentify_folder(cfg.data.path, tmp, cfg.data, cfg.deid)
        else:
            summary = {"note": f"data.source={cfg.data.source}: published de-identified; nothing to do"}
        write_json_atomic(tmp / SUMMARY_FILE, {"profile": cfg.deid.profile, "options": list(cfg.deid.options),
                                                "source": cfg.data.source, "sites": summary})
    log.info("de-identification for data.source=%s written to %s: %s", cfg.data.source, out_dir, summary)
    return summary


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
        write_json_atomic(tmp / SUMMARY_FILE, {"profile": deid_cfg.profile, "options": list(deid_cfg.options),
                                                "sites": summaries})
    log.info("de-identified sites %s into %s: %s", sites, out_dir, json.dumps({s: (v["written"], v["rejected"]) for s, v in summaries.items()}))
    return summaries
