"""Search output files for identifying values taken from the raw data: what a hospital's security reviewer would run.

The values come from the raw side (DICOM headers, clinical tables, site keys); every byte of the outputs
(DICOM, images, CSVs, logs, an MLflow store, a DVC cache or remote) is searched for them as whole words,
in the encodings the sites use. Dates are left out: after a per-patient shift one patient's date may be
another's real one, which reveals nothing.
"""

import csv
import hashlib
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

# Attributes whose values identify a patient or the staff around them; text of private attributes counts too.
IDENTIFYING = ("PatientName", "PatientID", "OtherPatientIDs", "PatientTelephoneNumbers", "PatientAddress",
               "AccessionNumber", "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName",
               "RequestingPhysician", "NameOfPhysiciansReadingStudy", "PatientMotherBirthName", "OtherPatientNames",
               "DeviceSerialNumber", "StationName", "StudyID", "RequestedProcedureID", "ScheduledProcedureStepID")
TEXT_VRS = {"LO", "SH", "PN", "LT", "ST", "UT", "UC"}
NOT_IDENTIFYING = {"ANONYMIZED", "ANONYMOUS", "TEST", "NONE", "UNKNOWN", "NAME", "HIS", "TEXT", "PATIENT"}
MAX_INFLATED = 64 * 2**20
MIN_LENGTH_IN_BINARIES = 6  # short names occur by chance in megabytes of pixels and weights


def _name_parts(value: str) -> set[str]:
    return {part for group in value.split("=") for part in re.split(r"[\^ ]", group)
            if len(part) >= 3 or (len(part) >= 2 and not part.isascii())}


def _forms(value: str) -> set[str]:
    """Return a value and the forms it takes with its separators dropped (010-1234-5678 -> 01012345678)."""
    forms = {value.strip()}
    digits = re.sub(r"[\s\-.+()]", "", value)
    if digits.isdigit() and len(digits) >= 7:
        forms.add(digits)
    return forms


def searchable(value: str) -> bool:
    """Return whether a value can identify anyone: a letter in it or five digits, not one repeated character."""
    text = value.strip()
    return (len(text) >= 3 or not text.isascii()) and len(set(text)) > 1 and text.upper() not in NOT_IDENTIFYING and \
        (re.search(r"[^\W\d_]", text) is not None or sum(c.isdigit() for c in text) >= 5)


def _read_header(path: Path):
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:
        return None


def dicom_values(path: Path) -> set[str]:
    """Return the identifying values of one raw DICOM file (empty when it cannot be read)."""
    ds, values = _read_header(path), set()
    for element in ds.iterall() if ds is not None else ():
        private_text = element.tag.is_private and element.VR in TEXT_VRS
        if (element.keyword in IDENTIFYING or private_text) and element.VR not in ("SQ", "OB", "OW", "UN") and element.value:
            text = str(element.value)
            values |= _name_parts(text) if element.VR == "PN" else {v for t in text.split("\\") for v in _forms(t)}
    return {v for v in values if searchable(v)}


def public_values(path: Path) -> set[str]:
    """Return the text of a file's public attributes that identify no one (a vendor's word in a private tag is no leak)."""
    ds = _read_header(path)
    return {str(e.value) for e in (ds.iterall() if ds is not None else ()) if not e.tag.is_private and e.value
            and e.VR in (TEXT_VRS | {"CS"}) - {"PN"} and e.keyword not in IDENTIFYING}


def table_values(path: Path, columns: tuple[str, ...]) -> set[str]:
    """Return the values of the named columns of a raw clinical table (names split into their parts)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    values = set()
    for row in rows:
        for column in columns:
            if row.get(column):
                values |= _name_parts(row[column]) | _forms(row[column])
    return {v for v in values if searchable(v)}


@dataclass
class ScanResult:
    """What a scan searched and found: values, files, bytes, and per file the values found in it."""

    values: int = 0
    files: int = 0
    bytes: int = 0
    hits: dict = field(default_factory=dict)


def _inflate(stream: bytes, wbits: int) -> bytes:
    """Return at most MAX_INFLATED bytes of a zlib or gzip stream (a bomb cannot stall the scan)."""
    try:
        return zlib.decompressobj(wbits).decompress(stream, MAX_INFLATED)
    except zlib.error:
        return b""


def inflated(data: bytes) -> bytes:
    """Return what compression hides in a file: a gzip member (.nii.gz), PNG zTXt/iTXt/iCCP and image data."""
    if data[:2] == b"\x1f\x8b":
        return _inflate(data, 16 + zlib.MAX_WBITS)
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return b""
    at, streams, image = 8, [], b""
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + length]
        if kind == b"IDAT":
            image += body
        elif kind in (b"zTXt", b"iCCP"):
            streams.append(_inflate(body[body.find(b"\0") + 2:], zlib.MAX_WBITS))
        elif kind == b"iTXt":
            streams.append(_inflate(body[body.find(b"\0") + 3:], zlib.MAX_WBITS))  # a compressed one; else stays text
        at += 12 + length
    return b"".join([*streams, _inflate(image, zlib.MAX_WBITS)])


def holds_text(data: bytes) -> bool:
    """Return whether a file is text, DICOM or an SQLite store (judged by content: DVC cache objects have no suffix)."""
    return data[128:132] == b"DICM" or data.startswith(b"SQLite format 3\0") or b"\0" not in data[:8192]


def _texts(data: bytes, textual: bool) -> list[str]:
    """Return decodings of a file in which a value could be read: UTF-8 always, the sites' code pages for text."""
    texts = [data.decode("utf-8", errors="ignore")]
    if textual:  # random bytes decoded as EUC-KR look like Hangul: text only
        texts += [data.decode(codec, errors="ignore") for codec in ("euc_kr", "latin-1", "utf-16-le")]
    return texts


def file_digests(folders: tuple[Path, ...]) -> set[str]:
    """Return the SHA-256 of every file under `folders` (published code whose exact copies are not data)."""
    return {hashlib.sha256(p.read_bytes()).hexdigest() for folder in folders for p in folder.rglob("*") if p.is_file()}


def scan_files(roots: list[Path], values: set[str], secrets: tuple[bytes, ...] = (),
               skip: tuple[Path, ...] = (), published: tuple[Path, ...] = ()) -> ScanResult:
    """Search every file under `roots`, and what compression hides in it, for the values as whole words and secret bytes.

    Files under `skip` (the site-only folders) are not searched, nor exact copies of files under `published`
    (crossmed's own source shipped inside a model: its scrubber lists common surnames on purpose).
    """
    known = file_digests(published)
    ordered = sorted((v for v in values if v.strip()), key=len, reverse=True)
    patterns = [re.compile(rf"(?<![\w]){re.escape(v)}(?![\w])") for v in ordered]
    result = ScanResult(values=len(ordered))
    skip = tuple(p.resolve() for p in skip)
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            if any(s == path.resolve() or s in path.resolve().parents for s in skip):
                continue
            data = path.read_bytes()
            if known and hashlib.sha256(data).hexdigest() in known:
                continue
            data += inflated(data)
            result.files += 1
            result.bytes += len(data)
            found = [s.hex()[:8] + "..." for s in secrets if s in data]
            textual = holds_text(data)
            for text in _texts(data, textual):
                found += [v for v, pattern in zip(ordered, patterns)
                          if (textual or len(v) >= MIN_LENGTH_IN_BINARIES) and v in text and pattern.search(text)]
            if found:
                result.hits[str(path)] = sorted(set(found))[:10]
    return result
