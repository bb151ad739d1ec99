"""De-identify a directory tree of DICOM files into another, with audit.csv and rejected.csv."""

import csv
import io
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from crossmed import __version__
from crossmed.deid.dicom_dataset import DatasetDeidentifier
from crossmed.deid.file_checks import burned_in_reason, pixel_data_problem
from crossmed.deid.profile import STANDARD_REVISION, Profile
from crossmed.deid.pseudonyms import Pseudonymizer
from crossmed.errors import InputError
from crossmed.files import atomic_path, write_bytes_atomic

log = logging.getLogger("crossmed.deidentify")
AUDIT_FILE, REJECTED_FILE = "audit.csv", "rejected.csv"
AUDIT_COLUMNS = ["output_path", "patient_pseudo_id", "study_uid", "series_uid", "sop_instance_uid",
                 "actions", "profile", "options", "crossmed_version"]
PROGRESS_EVERY_S = 10.0


@dataclass
class TreeSummary:
    """What one de-identification run read, wrote and refused."""

    read: int = 0
    written: int = 0
    rejected: int = 0
    seconds: float = 0.0
    actions: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        """Return the summary as plain JSON-able values."""
        return {"read": self.read, "written": self.written, "rejected": self.rejected,
                "seconds": round(self.seconds, 2), "actions": dict(sorted(self.actions.items()))}


def check_directories(src: Path, dst: Path) -> None:
    """Raise InputError when SRC is missing or when one directory lies inside the other."""
    if not src.is_dir():
        raise InputError(src, "source directory not found")
    src_r, dst_r = src.resolve(), dst.resolve()
    if dst_r == src_r or src_r in dst_r.parents:
        raise InputError(dst, f"destination lies inside the source directory {src}")
    if dst_r in src_r.parents:
        raise InputError(dst, f"source directory {src} lies inside the destination")


def _read(path: Path) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError as err:
        raise InputError(path, f"not a DICOM file ({err})") from err
    except Exception as err:  # pydicom raises many kinds on damaged files; each is a reason to reject
        raise InputError(path, f"unreadable DICOM ({type(err).__name__}: {err})") from err


def deidentify_file(path: Path, deidentifier: DatasetDeidentifier, allow_burned_in: bool):
    """Return (dataset, patient context, action counts) for one file, or raise InputError with the reason."""
    ds = _read(path)
    for reason in (pixel_data_problem(ds), None if allow_burned_in else burned_in_reason(ds)):
        if reason:
            raise InputError(path, reason)
    if "SOPInstanceUID" not in ds or "StudyInstanceUID" not in ds:
        raise InputError(path, "no SOPInstanceUID or StudyInstanceUID")
    patient, counts = deidentifier.apply(ds)
    return ds, patient, counts


def _encode(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def deidentify_tree(src: str | os.PathLike, dst: str | os.PathLike, key: bytes, profile: Profile,
                    patient_prefix: str = "", allow_burned_in: bool = False, max_date_shift_days: int = 365,
                    mapping_out: str | os.PathLike | None = None) -> TreeSummary:
    """De-identify every file under `src` into `dst/<patient>/<study>/<instance>.dcm`; return the summary."""
    src, dst = Path(src), Path(dst)
    check_directories(src, dst)
    pseudonyms = Pseudonymizer(key, patient_prefix, max_date_shift_days)
    deidentifier = DatasetDeidentifier(profile, pseudonyms)
    files = sorted(p for p in src.rglob("*") if p.is_file())
    summary, audit_rows, rejected_rows, mapping_rows = TreeSummary(), [], [], []
    started = last_report = time.perf_counter()
    dst.mkdir(parents=True, exist_ok=True)
    for path in files:
        summary.read += 1
        relative = path.relative_to(src).as_posix()
        try:
            ds, patient, counts = deidentify_file(path, deidentifier, allow_burned_in)
            out_relative = f"{patient.pseudo_id}/{ds.StudyInstanceUID}/{ds.SOPInstanceUID}.dcm"
            data = _encode(ds)
        except InputError as err:
            summary.rejected += 1
            rejected_rows.append({"path": relative, "reason": err.reason})
            log.warning("rejected %s: %s", relative, err.reason)
            continue
        write_bytes_atomic(dst / out_relative, data)
        summary.written += 1
        summary.actions.update(counts)
        audit_rows.append({
            "output_path": out_relative, "patient_pseudo_id": patient.pseudo_id, "study_uid": ds.StudyInstanceUID,
            "series_uid": ds.get("SeriesInstanceUID", ""), "sop_instance_uid": ds.SOPInstanceUID,
            "actions": ";".join(f"{k}={v}" for k, v in sorted(counts.items())), "profile": STANDARD_REVISION,
            "options": ";".join(profile.options), "crossmed_version": __version__})
        mapping_rows.append({"source_path": relative, "real_patient_id": patient.real_id,
                             "patient_pseudo_id": patient.pseudo_id, "output_path": out_relative})
        if time.perf_counter() - last_report > PROGRESS_EVERY_S:
            last_report = time.perf_counter()
            log.info("%d/%d files done (%d rejected)", summary.read, len(files), summary.rejected)
    _write_csv(dst / AUDIT_FILE, AUDIT_COLUMNS, sorted(audit_rows, key=lambda r: r["output_path"]))
    _write_csv(dst / REJECTED_FILE, ["path", "reason"], rejected_rows)
    if mapping_out is not None:
        _write_csv(Path(mapping_out), ["source_path", "real_patient_id", "patient_pseudo_id", "output_path"], mapping_rows)
    summary.seconds = time.perf_counter() - started
    log.info("read %d files from %s, wrote %d to %s, rejected %d, in %.1f s",
             summary.read, src, summary.written, dst, summary.rejected, summary.seconds)
    return summary


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
