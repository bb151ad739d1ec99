"""Refuse DICOM files that still identify a patient, so a demonstration never shows patient data.

The check reads the content, not a flag: Patient Identity Removed YES is necessary, not sufficient. Every
attribute the most retentive profile removes must be absent whatever VR it is written with, every one it
empties or replaces must be empty, a dummy or a pseudonym, no private attribute may remain, no element may
carry a VR its tag does not allow, no UID may be a site's own, and every text value left is searched for
national IDs, phone numbers, e-mail addresses, ID-like numbers and the names the file itself carries. The
container counts too: a preamble with data, private file meta information and compressed pixel data (whose
codec segments can carry text) are refused; crossmed's own output has none of them.
"""

import io
from functools import lru_cache
from pathlib import Path

import pydicom
from pydicom.multival import MultiValue

from crossmed.data.dicom_bounds import check_deflated
from crossmed.deid.dates import is_datetime, is_time
from crossmed.deid.dicom_dataset import AGE_STRING, DATE_SYNTAX
from crossmed.deid.file_checks import burned_in_reason
from crossmed.deid.profile import OPTIONS, load_profile
from crossmed.deid.text_scan import contains_identifiers, person_name_variants
from crossmed.deid.unlisted import CLASS_UID_TAGS, TEXT_VRS, dictionary_vr
from crossmed.deid.value_checks import declared_vr_fits, known_character_sets, number_identifies, registered_uid
from crossmed.errors import CrossmedError, InputError
from crossmed.limits import PREDICT_LIMITS, InputLimits, check_file_size
from crossmed.site_codes import PATIENT_PREFIX

# The most retentive profile (every retain and clean option): an attribute it still removes is never kept by any
# conformant de-identification, so its presence means the file was not de-identified.
_RETAIN_ALL = tuple(name for name in OPTIONS if name != "retain_long_modified_dates")
DUMMIES = {"", "ANONYMOUS", "ANONYMIZED", "ANONYMISED", "ANONYMOUS^PATIENT", "REMOVED", "UNKNOWN", "NONE", "NA", "N/A",
           "DEIDENTIFIED", "DE-IDENTIFIED", "PATIENT", "XXX", "XXXX"}
BASE32 = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
# Not free text: what a de-identifier writes itself (De-identification Method) and codes from published
# vocabularies (Code Value, Long Code Value, URN Code Value, Coding Scheme Version), whose digits are no IDs.
_NOT_FREE_TEXT = {0x00120063, 0x00080100, 0x00080119, 0x00080120, 0x00080103}
_FILE_META_FROM_THE_SOURCE = ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                              "ReceivingApplicationEntityTitle", "PrivateInformationCreatorUID", "PrivateInformation")
_PSEUDONYM_UID_ROOT = "2.25."  # UIDs derived from a key (crossmed's and other de-identifiers') live under this root


@lru_cache(maxsize=1)
def _retentive_profile():
    """Return the most retentive profile (read once per process)."""
    return load_profile(_RETAIN_ALL)


class PHIError(CrossmedError):
    """A DICOM file given for prediction still carries protected health information."""


def _values(element) -> list[str]:
    value = element.value
    if isinstance(value, (bytes, bytearray)):
        return [bytes(value).decode("latin-1").strip("\0 ")] if value.strip(b"\0 ") else []
    return [str(v) for v in (value if isinstance(value, (list, MultiValue)) else [value]) if v not in (None, "", b"")]


def is_pseudonym_or_dummy(value: str) -> bool:
    """Return whether an ID or name value is empty, a dummy, or a keyed pseudonym: an optional prefix and 16 upper-case
    base32 characters, with no name separators."""
    text = value.strip()
    if text.upper() in DUMMIES:
        return True
    prefix, code = text[:-16], text[-16:]
    return len(code) == 16 and set(code) <= BASE32 and bool(PATIENT_PREFIX.fullmatch(prefix))


def _date_or_time_check(vr: str):
    """Return the syntax check of a DA, DT or TM value."""
    return is_time if vr == "TM" else is_datetime if vr == "DT" else (lambda v: bool(DATE_SYNTAX.fullmatch(v)))


def _attribute_findings(ds: pydicom.Dataset) -> tuple[list[str], list[str]]:
    """Return (findings, names still carried) from attributes the profile removes, empties or replaces, by their
    dictionary VR whatever VR they are written with."""
    profile, findings, names = _retentive_profile(), [], []
    for element in ds.iterall():
        if element.tag.is_private:
            continue
        keyword = element.keyword or str(element.tag)
        if not declared_vr_fits(int(element.tag), element.VR):
            findings.append(f"{keyword} written with VR {element.VR}")
            continue
        action, vr = profile.action_for(int(element.tag)), dictionary_vr(int(element.tag)) or element.VR
        present = len(element.value or []) > 0 if element.VR == "SQ" else bool(_values(element))
        if present and vr == "PN" and action not in ("X", "Z", "D") and not all(map(is_pseudonym_or_dummy, _values(element))):
            findings.append(f"{keyword} holds a person's name")  # a PN the table does not list (Person Name in SR ...)
            names += _values(element)
            continue
        if present and vr in ("DA", "DT", "TM") and not all(map(_date_or_time_check(vr), _values(element))):
            findings.append(f"{keyword} holds something other than a {'time' if vr == 'TM' else 'date'}")
            continue
        if not present or action not in ("X", "Z", "D"):
            continue
        if action == "X" or vr in ("DA", "DT", "TM") or (element.VR == "SQ" and action == "Z"):
            findings.append(f"{keyword} present")
        elif vr in ("PN", "LO", "SH", "UC") and not all(is_pseudonym_or_dummy(v) for v in _values(element)):
            findings.append(f"{keyword} holds a value that is neither empty, a dummy nor a pseudonym")
            if vr == "PN":
                names += _values(element)
    return findings, names


def _value_findings(ds: pydicom.Dataset, names: list[str]) -> list[str]:
    """Return the values that identify: text with national IDs, phones, e-mail, IDs or the file's names; long numbers;
    a site's own UIDs; character set terms no standard defines."""
    variants = tuple(v for name in names for v in person_name_variants(name))
    findings = []
    for element in ds.iterall():
        if element.tag.is_private or element.VR == "SQ" or int(element.tag) in _NOT_FREE_TEXT:
            continue
        keyword = element.keyword or str(element.tag)
        if int(element.tag) == 0x00080005 and known_character_sets(element.value) != element.value:
            findings.append(f"{keyword} holds a term no standard defines")
        elif element.VR in TEXT_VRS | {"CS"}:
            values = [v for v in _values(element) if not is_pseudonym_or_dummy(v)]
            kinds = sorted({kind for value in values for kind in contains_identifiers(value, variants)})
            if kinds:
                findings.append(f"{keyword} holds {', '.join(kinds)}")
        elif element.VR in ("IS", "DS", "AT", "FL", "FD") and number_identifies(element, frozenset()):
            findings.append(f"{keyword} holds a number as long as an ID, or a tag no dictionary knows")
        elif element.VR == "UI" and int(element.tag) not in CLASS_UID_TAGS and any(
                not (registered_uid(v) or v.startswith(_PSEUDONYM_UID_ROOT)) for v in _values(element)):
            findings.append(f"{keyword} holds a UID of the site's own (not pseudonymised)")
    return findings


def _container_findings(data: bytes, ds: pydicom.Dataset) -> list[str]:
    """Return what the file around the data set still carries: preamble data, the source's file meta, codec segments."""
    findings = []
    if data[128:132] == b"DICM" and data[:128].strip(b"\0"):
        findings.append("the 128-byte preamble holds data")
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        findings += [f"file meta {k} present" for k in _FILE_META_FROM_THE_SOURCE if k in meta]
        syntax = meta.get("TransferSyntaxUID")
        if syntax is not None and syntax.is_compressed:
            findings.append(f"compressed pixel data ({syntax.name}) can carry text in its codec segments")
    return findings


def phi_findings(ds: pydicom.Dataset, data: bytes = b"") -> list[str]:
    """Return why `ds` (read from the file bytes `data`, when given) cannot count as de-identified; empty when it can."""
    findings = []
    if str(ds.get("PatientIdentityRemoved", "")).upper() != "YES":
        findings.append("Patient Identity Removed (0012,0062) is not YES")
    if reason := burned_in_reason(ds):
        findings.append(f"the pixels may carry burned-in text ({reason})")
    if str(ds.get("RecognizableVisualFeatures", "")).upper() == "YES":
        findings.append("Recognizable Visual Features (0028,0302) is YES")
    if any(element.tag.is_private for element in ds.iterall()):
        findings.append("private attributes present")
    age = str(ds.get("PatientAge", "") or "").strip()
    if age and (not AGE_STRING.fullmatch(age) or (age[3] == "Y" and int(age[:3]) > 89)):
        findings.append("Patient's Age is over 89 or not an age string")
    attributes, names = _attribute_findings(ds)
    return findings + _container_findings(data, ds) + attributes + _value_findings(ds, names)


def read_header(path: Path, limits: InputLimits = PREDICT_LIMITS) -> tuple[pydicom.Dataset, bytes]:
    """Return a DICOM file's attributes without pixels, and its bytes, after the size and inflation checks."""
    check_file_size(path, limits)
    data = path.read_bytes()
    check_deflated(path, data, limits)
    try:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True), data
    except Exception as err:  # damaged files fail in many ways inside pydicom
        raise InputError(path, f"unreadable DICOM ({type(err).__name__})") from err


def refuse_phi(path: str | Path, shown_as: str | None = None) -> None:
    """Raise PHIError naming the file (or `shown_as`) and every finding when a DICOM file is not de-identified."""
    findings = phi_findings(*read_header(Path(path)))
    if findings:
        raise PHIError(f"{shown_as or path}: refused, the DICOM file is not de-identified ({'; '.join(findings)}). "
                       "De-identify it first, e.g. `crossmed deidentify` with the site key")
