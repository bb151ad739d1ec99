"""What happens to an attribute that Table E.1-1 does not list: an allow-list, so what is not known to be safe goes.

- Group lengths, command and file meta elements inside a data set, and tags no DICOM dictionary knows: removed.
- Free text (AE AS LO LT PN SH ST UC UR UT) and opaque bytes (OB OD OF OL OV OW UN): removed, unless the
  attribute is on crossmed's reviewed list (profiles/crossmed-kept-unlisted.csv), where text is still searched.
- Dates (DA, DT): shifted with the patient's offset, kept or removed as the listed dates are under the chosen
  options; times (TM) are kept when dates are (a shift by whole days leaves them as they are), else removed.
- Codes, numbers, UIDs of classes and sequences (CS, DS, IS, FL, FD, SL, SS, SV, UL, US, UV, AT, UI, SQ): kept,
  sequences walked item by item with the same rules; code strings are searched like text.
"""

import csv
from functools import lru_cache
from importlib import resources

from pydicom.datadict import get_entry

KEPT_UNLISTED_FILE = "crossmed-kept-unlisted.csv"
TEXT_VRS = frozenset({"AE", "AS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
BYTES_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
DATE_ACTIONS = {"shift": "C", "keep": "K", "remove": "X"}


@lru_cache(maxsize=1)
def kept_unlisted_tags() -> frozenset[int]:
    """Return the tags of crossmed's reviewed list of unlisted text and byte attributes that are kept."""
    text = resources.files("crossmed.deid").joinpath("profiles", KEPT_UNLISTED_FILE).read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return frozenset(int(row["tag"], 16) for row in rows)


@lru_cache(maxsize=4096)
def dictionary_vr(tag: int) -> str | None:
    """Return the VR the DICOM dictionary gives a public tag (repeating groups included), or None when unknown."""
    try:
        return get_entry(tag)[0]
    except KeyError:
        return None


def unlisted_action(tag: int, vr: str | None, dates: str) -> str:
    """Return the action (K, C or X) for a public attribute Table E.1-1 does not list; `dates` is shift|keep|remove."""
    group, element = tag >> 16, tag & 0xFFFF
    known_vr = dictionary_vr(tag)
    if element == 0 or group in (0x0000, 0x0002) or known_vr is None:
        return "X"
    if tag in kept_unlisted_tags():
        return "K"
    vrs = set((known_vr if vr in (None, "UN") else vr).split(" or "))
    if vrs & (TEXT_VRS | BYTES_VRS):
        return "X"
    if vrs & {"DA", "DT"}:
        return DATE_ACTIONS[dates]
    if "TM" in vrs:
        return "K" if dates != "remove" else "X"
    return "K"
