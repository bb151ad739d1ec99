"""De-identify a directory tree of DICOM files into another, with audit.csv and rejected.csv."""

import csv
import io
import logging
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

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
        headerless = _read_without_file_meta(path)
        if headerless is None:
            raise InputError(path, f"not a DICOM file ({err})") from err
        return headerless
    except Exception as err:  # pydicom raises many kinds on damaged files; each is a reason to reject
        raise InputError(path, f"unreadable DICOM ({type(err).__name__}: {err})") from err


def _read_without_file_meta(path: Path) -> pydicom.Dataset | None:
    """Return a dataset written without preamble and file meta (older systems do this), or None if it is not one."""
    try:
        ds = pydicom.dcmread(path, force=True)
        if "SOPInstanceUID" not in ds or "SOPClassUID" not in ds:
            return None
    except Exception:
        return None
    implicit, little = ds.original_encoding
    ds.file_meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                          ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


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


@dataclass
class FileResult:
    """One file's outcome: the encoded output and its audit facts, or the reason it was refused."""

    relative: str
    reason: str | None = None
    out_relative: str = ""
    data: bytes = b""
    audit: dict = field(default_factory=dict)
    real_patient_id: str = ""
    counts: Counter = field(default_factory=Counter)


def process_file(path: Path, relative: str, deidentifier: DatasetDeidentifier, allow_burned_in: bool) -> FileResult:
    """Return the de-identified bytes of one file with its audit row, or the reason it is refused."""
    try:
        ds, patient, counts = deidentify_file(path, deidentifier, allow_burned_in)
        data = _encode(ds)
    except InputError as err:
        return FileResult(relative, reason=err.reason)
    out_relative = f"{patient.pseudo_id}/{ds.StudyInstanceUID}/{ds.SOPInstanceUID}.dcm"
    audit = {"output_path": out_relative, "patient_pseudo_id": patient.pseudo_id, "study_uid": ds.StudyInstanceUID,
             "series_uid": ds.get("SeriesInstanceUID", ""), "sop_instance_uid": ds.SOPInstanceUID,
             "actions": ";".join(f"{k}={v}" for k, v in sorted(counts.items())), "profile": STANDARD_REVISION,
             "options": ";".join(deidentifier.profile.options), "crossmed_version": __version__}
    return FileResult(relative, None, out_relative, data, audit, patient.real_id, counts)


_worker_state: dict = {}


def _init_worker(key: bytes, options: tuple, patient_prefix: str, max_date_shift_days: int, allow_burned_in: bool) -> None:
    from crossmed.deid.profile import load_profile

    _worker_state["deidentifier"] = DatasetDeidentifier(load_profile(options), Pseudonymizer(key, patient_prefix, max_date_shift_days))
    _worker_state["allow_burned_in"] = allow_burned_in


def _process_in_worker(job: tuple[Path, str]) -> FileResult:
    return process_file(job[0], job[1], _worker_state["deidentifier"], _worker_state["allow_burned_in"])


def _results(jobs, key, profile, patient_prefix, max_date_shift_days, allow_burned_in, workers):
    """Yield FileResults in input order, from this process or from `workers` processes."""
    if workers <= 1:
        deidentifier = DatasetDeidentifier(profile, Pseudonymizer(key, patient_prefix, max_date_shift_days))
        for path, relative in jobs:
            yield process_file(path, relative, deidentifier, allow_burned_in)
        return
    init = (key, profile.options, patient_prefix, max_date_shift_days, allow_burned_in)
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=init) as pool:
        yield from pool.map(_process_in_worker, jobs, chunksize=16)


def deidentify_tree(src: str | os.PathLike, dst: str | os.PathLike, key: bytes, profile: Profile,
                    patient_prefix: str = "", allow_burned_in: bool = False, max_date_shift_days: int = 365,
                    mapping_out: str | os.PathLike | None = None, workers: int = 1) -> TreeSummary:
    """De-identify every file under `src` into `dst/<patient>/<study>/<instance>.dcm`; return the summary."""
    src, dst = Path(src), Path(dst)
    check_directories(src, dst)
    files = sorted(p for p in src.rglob("*") if p.is_file())
    jobs = [(path, path.relative_to(src).as_posix()) for path in files]
    summary, audit_rows, rejected_rows, mapping_rows = TreeSummary(), [], [], []
    written_from: dict[str, str] = {}  # output path -> source path, to refuse a second copy of one instance
    started = last_report = time.perf_counter()
    dst.mkdir(parents=True, exist_ok=True)
    log.info("de-identifying %d files from %s with %d worker(s)", len(files), src, workers)
    for result in _results(jobs, key, profile, patient_prefix, max_date_shift_days, allow_burned_in, workers):
        summary.read += 1
        if result.reason is None and result.out_relative in written_from:
            result.reason = f"same SOP Instance UID as {written_from[result.out_relative]}, which was written"
        if result.reason is not None:
            summary.rejected += 1
            rejected_rows.append({"path": result.relative, "reason": result.reason})
            log.warning("rejected %s: %s", result.relative, result.reason)
            continue
        write_bytes_atomic(dst / result.out_relative, result.data)
        written_from[result.out_relative] = result.relative
        summary.written += 1
        summary.actions.update(result.counts)
        audit_rows.append(result.audit)
        mapping_rows.append({"source_path": result.relative, "real_patient_id": result.real_patient_id,
                             "patient_pseudo_id": result.audit["patient_pseudo_id"], "output_path": result.out_relative})
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
