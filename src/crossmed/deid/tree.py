"""De-identify DICOM files into an output folder: <patient>/<study>/<instance>.dcm, audit.csv and rejected.csv.

Nothing in the output names a source file: a refused file appears in rejected.csv under a pseudonymous
reference with a fixed reason, and only the site-only record maps the reference back to its path.
"""

import logging
import os
import re
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from crossmed import __version__
from crossmed.deid.dicom_dataset import DatasetDeidentifier
from crossmed.deid.dicom_file import encode_deidentified, output_transfer_syntax, read_source_dicom, source_transfer_syntax
from crossmed.deid.output_folder import output_mode, publish, staging_folder
from crossmed.deid.profile import STANDARD_REVISION
from crossmed.deid.refusals import Refusal
from crossmed.deid.settings import DeidSettings
from crossmed.deid.site_records import record_rejections
from crossmed.deid.source_files import list_source_files
from crossmed.errors import InputError
from crossmed.files import write_bytes_atomic, write_csv_atomic

log = logging.getLogger("crossmed.deidentify")
MAPPING_COLUMNS = ["source_path", "real_patient_id", "patient_pseudo_id", "output_path"]
UID_SYNTAX = re.compile(r"[0-9]{1,64}(?:\.[0-9]{1,64}){0,63}")  # output paths are built from UIDs
PROGRESS_EVERY_S = 10.0


@dataclass
class TreeSummary:
    """What one de-identification run read, wrote and refused."""

    read: int = 0
    written: int = 0
    rejected: int = 0
    seconds: float = 0.0
    actions: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    outputs: dict = field(default_factory=dict)  # source relative path -> output path (not in as_dict: names sources)
    refusals: dict = field(default_factory=dict)  # source relative path -> Refusal

    def as_dict(self) -> dict:
        """Return the summary as plain JSON-able values."""
        return {"read": self.read, "written": self.written, "rejected": self.rejected,
                "rejected_by_reason": dict(sorted(self.reasons.items())), "seconds": round(self.seconds, 2),
                "actions": dict(sorted(self.actions.items()))}


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def check_directories(src: Path, dst: Path, site_only: tuple[Path | None, ...] = ()) -> None:
    """Raise InputError when SRC is missing, one folder lies in the other, or a site-only file would land in DST."""
    if not src.is_dir():
        raise InputError(src, "source directory not found")
    if _inside(dst, src):
        raise InputError(dst, f"destination lies inside the source directory {src}")
    if _inside(src, dst):
        raise InputError(dst, f"source directory {src} lies inside the destination")
    for path in filter(None, site_only):
        if _inside(Path(path), dst):
            raise InputError(path, f"names source files and real IDs, so it must stay outside the output folder {dst}")


@dataclass
class FileResult:
    """One file's outcome: the encoded output and its audit facts, or the refusal."""

    relative: str
    refusal: Refusal | None = None
    out_relative: str = ""
    data: bytes = b""
    audit: dict = field(default_factory=dict)
    real_patient_id: str = ""
    counts: Counter = field(default_factory=Counter)


def _deidentified_bytes(path: Path, deidentifier: DatasetDeidentifier, settings: DeidSettings):
    """Return (output bytes, dataset, patient context, action counts) of one file, or raise Refusal."""
    ds = read_source_dicom(path, settings.limits, settings.allow_burned_in)
    if not str(ds.get("PatientID", "") or "").strip():
        raise Refusal(path, "no_patient_id")
    transfer_syntax = output_transfer_syntax(source_transfer_syntax(ds))
    patient, counts = deidentifier.apply(ds)
    if not all(UID_SYNTAX.fullmatch(str(ds.get(k, ""))) for k in ("StudyInstanceUID", "SOPInstanceUID")):
        raise Refusal(path, "invalid_uid")
    try:
        return encode_deidentified(ds, transfer_syntax), ds, patient, counts
    except Exception as err:  # a value pydicom cannot encode; the file is refused, the run goes on
        raise Refusal(path, "cannot_deidentify", f"cannot write ({type(err).__name__}: {err})") from err


def process_file(path: Path, relative: str, deidentifier: DatasetDeidentifier, settings: DeidSettings) -> FileResult:
    """Return the de-identified bytes of one file with its audit row, or the refusal."""
    try:
        data, ds, patient, counts = _deidentified_bytes(path, deidentifier, settings)
    except Refusal as refusal:
        return FileResult(relative, refusal)
    except Exception as err:  # an unforeseen failure on one file must not end the run or skip the file silently
        return FileResult(relative, Refusal(path, "cannot_deidentify", f"{type(err).__name__}: {err}"))
    out_relative = f"{patient.pseudo_id}/{ds.StudyInstanceUID}/{ds.SOPInstanceUID}.dcm"
    audit = {"output_path": out_relative, "source_reference": deidentifier.pseudonyms.source_reference(relative),
             "patient_pseudo_id": patient.pseudo_id, "study_uid": ds.StudyInstanceUID,
             "series_uid": ds.get("SeriesInstanceUID", ""), "sop_instance_uid": ds.SOPInstanceUID,
             "actions": ";".join(f"{k}={v}" for k, v in sorted(counts.items())), "profile": STANDARD_REVISION,
             "options": ";".join(deidentifier.profile.options), "crossmed_version": __version__}
    return FileResult(relative, None, out_relative, data, audit, patient.real_id, counts)


_worker_state: dict = {}


def _init_worker(settings: DeidSettings) -> None:
    _worker_state["settings"] = settings
    _worker_state["deidentifier"] = DatasetDeidentifier(settings.profile, settings.pseudonymizer())


def _process_in_worker(job: tuple[Path, str]) -> FileResult:
    return process_file(job[0], job[1], _worker_state["deidentifier"], _worker_state["settings"])


def _results(jobs: list[tuple[Path, str]], settings: DeidSettings):
    """Yield FileResults in input order, from this process or from worker processes."""
    if settings.workers <= 1:
        deidentifier = DatasetDeidentifier(settings.profile, settings.pseudonymizer())
        for path, relative in jobs:
            yield process_file(path, relative, deidentifier, settings)
        return
    with ProcessPoolExecutor(settings.workers, initializer=_init_worker, initargs=(settings,)) as pool:
        yield from pool.map(_process_in_worker, jobs, chunksize=16)


class _Refusals:
    """Refused files: a shared row (reference, fixed reason) and a site-only row (source path, detail) each."""

    def __init__(self, settings: DeidSettings, summary: TreeSummary):
        self.pseudonyms, self.summary = settings.pseudonymizer(), summary
        self.shared: list[dict] = []
        self.site_only: list[dict] = []

    def add(self, relative: str, refusal: Refusal) -> None:
        reference = self.pseudonyms.source_reference(relative)
        self.summary.rejected += 1
        self.summary.reasons[refusal.code] += 1
        self.summary.refusals[relative] = refusal
        self.shared.append({"reference": reference, "reason_code": refusal.code, "reason": refusal.public_reason})
        self.site_only.append({"reference": reference, "source_path": relative, "reason_code": refusal.code,
                               "detail": refusal.reason})
        log.warning("refused %s: %s", reference, refusal.public_reason)


def deidentify_files(jobs: list[tuple[Path, str]], dst: str | os.PathLike, settings: DeidSettings,
                     refused: list[tuple[str, Refusal]] = (), site_records: str | os.PathLike | None = None,
                     mapping_out: str | os.PathLike | None = None) -> TreeSummary:
    """De-identify (path, relative name) jobs into `dst/<patient>/<study>/<instance>.dcm`; return the summary.

    `refused` are files refused before reading (links out of the source, unreadable folders). The site-only
    record of refused source files goes to `site_records`, the real-to-pseudonym mapping to `mapping_out`.
    """
    dst = Path(dst)
    signature = settings.output_signature()
    mode = output_mode(dst, signature)
    summary, audit_rows, mapping_rows = TreeSummary(), [], []
    refusals = _Refusals(settings, summary)
    for relative, refusal in refused:
        summary.read += 1
        refusals.add(relative, refusal)
    written_from: dict[str, str] = {}  # output path -> source reference, to refuse a second copy of one instance
    started = last_report = time.perf_counter()
    staging = staging_folder(dst)
    log.info("de-identifying %d files with %d worker(s) into %s (%s)", len(jobs), settings.workers, dst,
             "adding to the existing folder" if mode == "add" else "a new folder")
    try:
        for result in _results(jobs, settings):
            summary.read += 1
            if result.refusal is None and result.out_relative in written_from:
                result.refusal = Refusal(result.relative, "duplicate_instance",
                                         f"same SOP Instance as {written_from[result.out_relative]}, which was written")
            if result.refusal is not None:
                refusals.add(result.relative, result.refusal)
                continue
            write_bytes_atomic(staging / result.out_relative, result.data)
            written_from[result.out_relative] = result.relative
            summary.outputs[result.relative] = result.out_relative
            summary.written += 1
            summary.actions.update(result.counts)
            audit_rows.append(result.audit)
            mapping_rows.append({"source_path": result.relative, "real_patient_id": result.real_patient_id,
                                 "patient_pseudo_id": result.audit["patient_pseudo_id"], "output_path": result.out_relative})
            if time.perf_counter() - last_report > PROGRESS_EVERY_S:
                last_report = time.perf_counter()
                log.info("%d/%d files done (%d refused)", summary.read, len(jobs), summary.rejected)
        publish(staging, dst, mode, audit_rows, refusals.shared, signature)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # a failed or interrupted run leaves the output as it was
        raise
    _write_site_only(refusals.site_only, site_records, mapping_rows, mapping_out)
    summary.seconds = time.perf_counter() - started
    log.info("read %d files, wrote %d to %s, refused %d%s, in %.1f s", summary.read, summary.written, dst,
             summary.rejected, f" {dict(summary.reasons)}" if summary.rejected else "", summary.seconds)
    return summary


def _write_site_only(rejections: list[dict], site_records, mapping_rows: list[dict], mapping_out) -> None:
    """Write what names source files and real IDs, only where the site asked for it (never into the output)."""
    if rejections and site_records is not None:
        path = record_rejections(Path(site_records), rejections)
        log.info("source files of the %d refusals: %s (site only; never share it)", len(rejections), path)
    elif rejections:
        log.warning("%d file(s) refused; no site-records folder was given, so which source files they were is not kept",
                    len(rejections))
    if mapping_out is not None:
        write_csv_atomic(Path(mapping_out), MAPPING_COLUMNS,
                         [{**row, "source_path": row["source_path"].encode("utf-8", "surrogateescape")
                           .decode("utf-8", "backslashreplace")} for row in mapping_rows])


def deidentify_tree(src: str | os.PathLike, dst: str | os.PathLike, settings: DeidSettings,
                    site_records: str | os.PathLike | None = None,
                    mapping_out: str | os.PathLike | None = None) -> TreeSummary:
    """De-identify every file under `src` into `dst/<patient>/<study>/<instance>.dcm`; return the summary."""
    src, dst = Path(src), Path(dst)
    check_directories(src, dst, (Path(site_records) if site_records else None, Path(mapping_out) if mapping_out else None))
    jobs, refused = list_source_files(src)
    log.info("found %d files under %s (%d not read)", len(jobs), src, len(refused))
    return deidentify_files(jobs, dst, settings, refused, site_records, mapping_out)
