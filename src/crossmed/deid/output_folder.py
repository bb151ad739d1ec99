"""The output folder of a de-identification run: one key and one set of options per folder, files published whole.

A run writes into a staging folder beside the output and publishes only at the end, so a kill leaves the
output as it was. A non-empty output folder is added to only when it was written with the same site key
(compared through a check value, never the key), options, prefix and date shift bound; otherwise the run
is refused, since one folder with two pseudonym schemes would link nothing and audit half of it.
"""

import csv
import json
import logging
import os
import shutil
from pathlib import Path

from crossmed.errors import InputError
from crossmed.files import write_csv_atomic, write_json_atomic

log = logging.getLogger("crossmed.deidentify")
SETTINGS_FILE = "crossmed-deid.json"
AUDIT_FILE, REJECTED_FILE = "audit.csv", "rejected.csv"
AUDIT_COLUMNS = ["output_path", "source_reference", "patient_pseudo_id", "study_uid", "series_uid", "sop_instance_uid",
                 "actions", "profile", "options", "crossmed_version"]
REJECTED_COLUMNS = ["reference", "reason_code", "reason"]


def output_mode(dst: Path, signature: dict) -> str:
    """Return 'new' for an absent or empty output folder, 'add' for one written with the same settings; else refuse."""
    if not dst.exists():
        return "new"
    if not dst.is_dir():
        raise InputError(dst, "exists and is not a folder")
    if not any(dst.iterdir()):
        return "new"
    marker = dst / SETTINGS_FILE
    if not marker.is_file():
        raise InputError(dst, f"is not empty and was not written by crossmed deidentify (no {SETTINGS_FILE}); "
                              "choose an empty or new output folder")
    try:
        written = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(marker, f"unreadable ({err}); choose an empty or new output folder") from err
    differs = [name for name in signature if written.get(name) != signature[name]]
    if differs:
        what = ["another site key" if name == "key_check" else f"another {name}" for name in differs]
        raise InputError(dst, f"was written with {', '.join(what)}; adding to it would mix two pseudonym schemes in one "
                              "folder. Use the same settings, or an empty or new output folder")
    return "add"


def staging_folder(dst: Path) -> Path:
    """Return a fresh staging folder beside `dst`, removing one an interrupted run left."""
    staging = dst.parent / f".{dst.name}.crossmed-partial"
    if staging.exists():
        shutil.rmtree(staging)
        log.info("removed %s, left by an interrupted run", staging)
    staging.mkdir(parents=True)
    return staging


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _write_tables(folder: Path, audit: list[dict], rejected: list[dict]) -> None:
    write_csv_atomic(folder / AUDIT_FILE, AUDIT_COLUMNS, sorted(audit, key=lambda r: r["output_path"]))
    write_csv_atomic(folder / REJECTED_FILE, REJECTED_COLUMNS, sorted(rejected, key=lambda r: r["reference"]))


def publish(staging: Path, dst: Path, mode: str, audit: list[dict], rejected: list[dict], signature: dict) -> None:
    """Move the staged files into `dst` with audit.csv and rejected.csv covering everything the folder holds."""
    if mode == "new":
        _write_tables(staging, audit, rejected)
        write_json_atomic(staging / SETTINGS_FILE, signature)
        if dst.exists():
            dst.rmdir()  # empty (checked by output_mode)
        os.replace(staging, dst)
        return
    previous = {row["output_path"]: row for row in _rows(dst / AUDIT_FILE)}
    audit = list({**previous, **{row["output_path"]: row for row in audit}}.values())
    written = {row["source_reference"] for row in audit}
    earlier = [row for row in _rows(dst / REJECTED_FILE) if row["reference"] not in written]
    rejected = list({row["reference"]: row for row in [*earlier, *rejected]}.values())
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        destination = dst / path.relative_to(staging)
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, destination)
    _write_tables(dst, audit, rejected)  # after the files: an interruption leaves no audit row without its file
    shutil.rmtree(staging)
