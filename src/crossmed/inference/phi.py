"""Refuse DICOM files that still identify a patient, so a demonstration never shows patient data.

The check reads the content, not a flag: Patient Identity Removed YES is necessary, not sufficient. Every
attribute the most retentive profile removes must be absent, every one it empties or replaces must be
empty, a dummy or a pseudonym, no private attribute may remain, and every text value left is searched for
national IDs, phone numbers, e-mail addresses, ID-like numbers and the names the file itself carries.
"""

import io
from functools import lru_cache
from pathlib import Path

import pydicom
from pydicom.multival import MultiValue

from crossmed.data.dicom_bounds import check_deflated
from crossmed.deid.profile import OPTIONS, load_profile
from crossmed.deid.text_scan import contains_identifiers, person_name_variants
from crossmed.deid.unlisted import TEXT_VRS
from crossmed.errors import CrossmedError, InputError
from crossmed.limits import PREDICT_LIMITS, InputLimits, check_file_size
from crossmed.site_codes import PATIENT_PREFIX

# The most retentive profile (every retain and clean option): an attribute it still removes is never kept by any
# conformant de-identification, so its presence means the file was not de-identified.
_RETAIN_ALL = tuple(name for name in OPTIONS if name != "retain_long_modified_dates")
DUMMIES = {"", "ANONYMOUS", "ANONYMIZED", "ANONYMISED", "ANONYMOUS^PATIENT", "REMOVED", "UNKNOWN", "NONE", "NA", "N/A",
           "DEIDENTIFIED", "DE-IDENTIFIED", "PATIENT", "XXX", "XXXX"}
# Not free text: what a de-identifier writes itself (De-identification Method) and codes from published
# vocabularies (Code Value, Long Code Value, URN Code Value, Coding Scheme Version), whose digits are no IDs.
_NOT_FREE_TEXT = {0x00120063, 0x00080100, 0x00080119, 0x00080120, 0x00080103}


@lru_cache(maxsize=1)
def _retentive_profile():
    """Return the most retentive profile (read once per process)."""
    return load_profile(_RETAIN_ALL)


class PHIError(CrossmedError):
    """A DICOM file given for prediction still carries protected health information."""


def _values(element) -> list[str]:
    value = element.value
    return [str(v) for v in (value if isinstance(value, (list, MultiValue)) else [value]) if v not in (None, "", b"")]


def is_pseudonym_or_dummy(value: str) -> bool:
    """Return whether an ID or name value is empty, a dummy or a keyed pseudonym (an optional prefix + 16 base32)."""
    text = value.strip().upper()
    if text in DUMMIES:
        return True
    prefix, code = text[:-16], text[-16:]
    return len(text) >= 16 and all(c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" for c in code) and \
        bool(PATIENT_PREFIX.fullmatch(prefix))


def _attribute_findings(ds: pydicom.Dataset) -> tuple[list[str], list[str]]:
    """Return (findings, names still carried) from the attributes the profile removes, empties or replaces."""
    profile, findings, names = _retentive_profile(), [], []
    for element in ds.iterall():
        if element.tag.is_private or element.VR == "SQ":
            continue
        action, values = profile.action_for(int(element.tag)), _values(element)
        if not values or action not in ("X", "Z", "D"):
            continue
        keyword = element.keyword or str(element.tag)
        if action == "X" or element.VR in ("DA", "DT", "TM"):
            findings.append(f"{keyword} present")
        elif element.VR in ("PN", "LO", "SH") and not all(is_pseudonym_or_dummy(v) for v in values):
            findings.append(f"{keyword} holds a value that is neither empty, a dummy nor a pseudonym")
            if element.VR == "PN":
                names += values
    return findings, names


def _text_findings(ds: pydicom.Dataset, names: list[str]) -> list[str]:
    """Return the text attributes that hold national IDs, phone numbers, e-mail addresses, IDs or the file's names."""
    variants = tuple(v for name in names for v in person_name_variants(name))
    findings = []
    for element in ds.iterall():
        if element.tag.is_private or element.VR not in TEXT_VRS or int(element.tag) in _NOT_FREE_TEXT:
            continue
        values = [v for v in _values(element) if not is_pseudonym_or_dummy(v)]
        kinds = sorted({kind for value in values for kind in contains_identifiers(value, variants)})
        if kinds:
            findings.append(f"{element.keyword or element.tag} holds {', '.join(kinds)}")
    return findings


def phi_findings(ds: pydicom.Dataset) -> list[str]:
    """Return why `ds` cannot count as de-identified (empty when it can)."""
    findings = []
    if str(ds.get("PatientIdentityRemoved", "")).upper() != "YES":
        findings.append("Patient Identity Removed (0012,0062) is not YES")
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        findings.append("Burned In Annotation (0028,0301) is YES")
    if any(element.tag.is_private for element in ds.iterall()):
        findings.append("private attributes present")
    attributes, names = _attribute_findings(ds)
    return findings + attributes + _text_findings(ds, names)


def read_header(path: Path, limits: InputLimits = PREDICT_LIMITS) -> pydicom.Dataset:
    """Return a DICOM file's attributes without pixels, after the size and inflation checks."""
    check_file_size(path, limits)
    data = path.read_bytes()
    check_deflated(path, data, limits)
    try:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except Exception as err:  # damaged files fail in many ways inside pydicom
        raise InputError(path, f"unreadable DICOM ({type(err).__name__}: {err})") from err


def refuse_phi(path: str | Path, shown_as: str | None = None) -> None:
    """Raise PHIError naming the file (or `shown_as`) and every finding when a DICOM file is not de-identified."""
    findings = phi_findings(read_header(Path(path)))
    if findings:
        raise PHIError(f"{shown_as or path}: refused, the DICOM file is not de-identified ({'; '.join(findings)}). "
                       "De-identify it first, e.g. `crossmed deidentify` with the site key")
