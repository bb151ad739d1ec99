"""What happens to an attribute that Table E.1-1 does not list: an allow-list, so what is not known to be safe goes.

- Group lengths, command and file meta elements inside a data set, overlays and curves (60xx, 50xx: graphics
  drawn over the image) and tags no DICOM dictionary knows: removed.
- Free text (AE AS LO LT PN SH ST UC UR UT) and opaque bytes (OB OD OF OL OV OW UN): removed, unless the
  attribute is on crossmed's reviewed list (profiles/crossmed-kept-unlisted.csv) and stands where that list
  allows it (Pixel Data in the data set itself, LUT Data in a LUT sequence); kept text is still searched.
- Dates (DA, DT): shifted with the patient's offset, kept or removed as the listed dates are under the chosen
  options; times (TM) are kept when dates are (a shift by whole days leaves them as they are), else removed.
- UIDs (UI): re-derived from the site key like listed instance UIDs (U), unless the attribute names a class or a
  vocabulary (SOP Class UID, Coding Scheme UID ...) or a value is a UID the DICOM standard registers.
- Codes, numbers and sequences (CS, DS, IS, FL, FD, SL, SS, SV, UL, US, UV, AT, SQ): kept, sequences walked item
  by item with the same rules; code strings are searched like text and numbers checked against the patient's IDs.
"""

import csv
from functools import lru_cache
from importlib import resources

from pydicom.datadict import get_entry

KEPT_UNLISTED_FILE = "crossmed-kept-unlisted.csv"
TEXT_VRS = frozenset({"AE", "AS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
BYTES_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
DATE_ACTIONS = {"shift": "C", "keep": "K", "remove": "X"}
# UIDs that name a class or a vocabulary, never an instance: kept as they are (other UIDs are re-derived).
CLASS_UID_TAGS = frozenset({0x00080016, 0x0008001A, 0x0008001B, 0x0008010C, 0x00080117, 0x00080118, 0x00081150,
                            0x00041510, 0x00041512})


@lru_cache(maxsize=1)
def kept_unlisted() -> dict[int, frozenset[str]]:
    """Return crossmed's reviewed list of unlisted text and byte attributes that are kept: tag -> where they may stand."""
    text = resources.files("crossmed.deid").joinpath("profiles", KEPT_UNLISTED_FILE).read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {int(row["tag"], 16): frozenset(row["within"].split("|")) for row in rows}


def _stands_where_allowed(tag: int, parent: str) -> bool:
    """Return whether a listed-as-kept attribute stands where the list allows it ('top' or its parent's keyword)."""
    allowed = kept_unlisted()[tag]
    return "any" in allowed or parent in allowed


@lru_cache(maxsize=4096)
def dictionary_vr(tag: int) -> str | None:
    """Return the VR the DICOM dictionary gives a public tag (repeating groups included), or None when unknown."""
    try:
        return get_entry(tag)[0]
    except KeyError:
        return None


def unlisted_action(tag: int, vr: str | None, dates: str, parent: str = "top") -> str:
    """Return the action (K, C, U or X) for a public attribute Table E.1-1 does not list.

    `dates` is shift|keep|remove; `parent` is 'top' or the keyword of the sequence the attribute stands in.
    """
    group, element = tag >> 16, tag & 0xFFFF
    known_vr = dictionary_vr(tag)
    if element == 0 or group in (0x0000, 0x0002) or group & 0xFF00 in (0x5000, 0x6000) or known_vr is None:
        return "X"
    if tag in kept_unlisted():
        return "K" if _stands_where_allowed(tag, parent) else "X"
    vrs = set((known_vr if vr in (None, "UN") else vr).split(" or "))
    if vrs & (TEXT_VRS | BYTES_VRS):
        return "X"
    if vrs & {"DA", "DT"}:
        return DATE_ACTIONS[dates]
    if "TM" in vrs:
        return "K" if dates != "remove" else "X"
    if "UI" in vrs:
        return "K" if tag in CLASS_UID_TAGS else "U"
    return "K"
