"""Refuse DICOM files that still identify a patient, so a demonstration never shows patient data."""

from functools import lru_cache
from pathlib import Path

import pydicom

from crossmed.deid.profile import OPTIONS, load_profile
from crossmed.errors import CrossmedError

# The most retentive profile (every retain and clean option): an attribute it still removes is never kept by any
# conformant de-identification, so its presence means the file was not de-identified.
_RETAIN_ALL = tuple(name for name in OPTIONS if name != "retain_long_modified_dates")


@lru_cache(maxsize=1)
def _retentive_profile():
    """Return the most retentive profile (read once per process)."""
    return load_profile(_RETAIN_ALL)


class PHIError(CrossmedError):
    """A DICOM file given for prediction still carries protected health information."""


def _must_be_gone(action: str | None, vr: str) -> bool:
    """Return whether an attribute with this action and VR can hold no value after de-identification (X: removed;
    Z dates and times such as Patient's Birth Date: emptied, while Z names and IDs may hold pseudonyms)."""
    return action == "X" or (action == "Z" and vr in ("DA", "DT", "TM"))


def phi_findings(ds: pydicom.Dataset) -> list[str]:
    """Return why `ds` cannot count as de-identified (empty when it can)."""
    findings = []
    if str(ds.get("PatientIdentityRemoved", "")).upper() != "YES":
        findings.append("Patient Identity Removed (0012,0062) is not YES")
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        findings.append("Burned In Annotation (0028,0301) is YES")
    profile = _retentive_profile()
    kept = [element.keyword or str(element.tag) for element in ds.iterall()
            if not element.tag.is_private and element.VR != "SQ" and element.value not in (None, "", b"")
            and _must_be_gone(profile.action_for(int(element.tag)), element.VR)]
    if kept:
        findings.append(f"identifying attribute(s) present: {', '.join(sorted(set(kept)))}")
    if any(element.tag.is_private for element in ds.iterall()):
        findings.append("private attributes present")
    return findings


def refuse_phi(path: str | Path) -> None:
    """Raise PHIError naming the file and every finding when a DICOM file is not de-identified."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    findings = phi_findings(ds)
    if findings:
        raise PHIError(f"{path}: refused, the DICOM file is not de-identified ({'; '.join(findings)}). "
                       "De-identify it first, e.g. `crossmed deidentify` with the site key")
