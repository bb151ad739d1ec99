"""Checks on values crossmed keeps without reading them as text: codes, numbers, UIDs and the character set.

A value is only as safe as its type: an attribute whose declared VR is not the dictionary's, a number
with more values than the attribute allows, a seven-digit "series number" that is an accession number,
or a character set term no standard defines can each carry what the de-identifier would otherwise remove.
"""

import re
import struct

from pydicom.charset import python_encoding
from pydicom.datadict import get_entry
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from pydicom.uid import UID

from crossmed.deid.unlisted import dictionary_vr

BINARY_NUMBER_SIZES = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "UV": 8, "SV": 8, "AT": 4}
BINARY_NUMBER_CODES = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "UV": "Q", "SV": "q"}
TEXT_NUMBER_VRS = {"IS", "DS"}
# LUT data -> its descriptor (entries, first mapped value, bits): a table holds at most entries x 16 bits.
LUT_DESCRIPTORS = {0x00281201: 0x00281101, 0x00281202: 0x00281102, 0x00281203: 0x00281103, 0x00281204: 0x00281104,
                   0x00283006: 0x00283002}
LONGEST_PLAIN_NUMBER = 6  # digits of an integer part; counts, numbers and sizes rarely have more, IDs do
_DIGITS = re.compile(r"\d")


def declared_vr_fits(tag: int, declared: str | None) -> bool:
    """Return whether an element's declared VR is one the DICOM dictionary allows for its tag (UN and unknown pass)."""
    if declared in (None, "UN"):
        return True
    try:
        allowed = get_entry(tag)[0]
    except KeyError:
        return True
    return declared in allowed.split(" or ")


def _vm_bounds(tag: int) -> tuple[int, int | None]:
    """Return the least and most values the dictionary allows (None: no upper bound)."""
    try:
        vm = get_entry(tag)[1]
    except KeyError:
        return 1, None
    numbers = [int(n) for n in re.findall(r"\d+", vm)]
    return (numbers[0], None) if "n" in vm else (numbers[0], numbers[-1])


def value_count_fits(element: DataElement) -> bool:
    """Return whether a binary number element holds a whole number of values within its allowed multiplicity."""
    size = BINARY_NUMBER_SIZES.get(element.VR)
    if size is None or element.value is None:
        return True
    raw = element.value if isinstance(element.value, bytes) else None
    count = len(raw) // size if raw is not None else len(element.value) if isinstance(element.value, (list, MultiValue)) else 1
    if raw is not None and len(raw) % size:
        return False
    low, high = _vm_bounds(int(element.tag))
    return count == 0 or (count >= low and (high is None or count <= high))


def holds_an_id(digits: str, identifier_digits: frozenset[str]) -> bool:
    """Return whether a number's digits are, or contain, one of the patient's IDs (leading zeros aside)."""
    digits = digits.lstrip("0")
    return len(digits) >= 5 and any(ident in digits for ident in identifier_digits)


def raw_number_is_unsafe(tag: int, vr: str, data: bytes, little_endian: bool, identifier_digits: frozenset[str]) -> bool:
    """Return whether a number, read from its bytes as the file holds them (not decoded, so it is written back byte
    for byte), breaks its multiplicity, has an ID's length, holds one of the patient's IDs or names no known tag."""
    if vr in TEXT_NUMBER_VRS:
        values = data.decode("latin-1").strip(" \0").split("\\")
        whole = [v.strip().split(".")[0].lstrip("+-") for v in values]
        return any(len(w.lstrip("0")) > LONGEST_PLAIN_NUMBER for w in whole) or \
            any(holds_an_id(digits_of(v), identifier_digits) for v in values)
    low, high = _vm_bounds(tag)
    size = BINARY_NUMBER_SIZES[vr]
    count = len(data) // size
    if len(data) % size or (count and (count < low or (high is not None and count > high))):
        return True
    order = "<" if little_endian else ">"
    if vr == "AT":  # two 16-bit halves per tag: group, element
        halves = struct.unpack(order + "H" * (count * 2), data[:count * size])
        return any(not known_tag((group << 16) | element) for group, element in zip(halves[::2], halves[1::2]))
    numbers = struct.unpack(order + BINARY_NUMBER_CODES[vr] * count, data[:count * size])
    if vr in ("FL", "FD"):
        integral = [int(n) for n in numbers if n == n and abs(n) < 1e300 and float(n).is_integer()]
        return any(len(str(abs(n))) > LONGEST_PLAIN_NUMBER or holds_an_id(str(abs(n)), identifier_digits) for n in integral)
    return any(holds_an_id(str(abs(n)), identifier_digits) for n in numbers)


def known_tag(tag: int) -> bool:
    """Return whether an AT value names a tag the DICOM dictionary knows, or a private one (bytes dressed as a tag do not)."""
    return (tag >> 16) % 2 == 1 or dictionary_vr(tag) is not None


def digits_of(value: str) -> str:
    """Return the digits of a value (800101-1234567 -> 8001011234567)."""
    return "".join(_DIGITS.findall(str(value)))


def number_identifies(element: DataElement, identifier_digits: frozenset[str]) -> bool:
    """Return whether a decoded number looks like an identifier: an ID's length, one of the patient's IDs (leading zeros
    aside, inside a fraction too), an integral float as long as an ID, or an AT naming no known tag."""
    values = element.value if isinstance(element.value, (list, MultiValue)) else [element.value]
    if element.VR == "AT":
        return any(not known_tag(int(v)) for v in values if v is not None)
    for value in values:
        if value is None or str(value).strip() == "":
            continue
        if element.VR in ("FL", "FD"):
            if value == value and abs(value) < 1e300 and float(value).is_integer() and (
                    len(str(abs(int(value)))) > LONGEST_PLAIN_NUMBER or holds_an_id(str(abs(int(value))), identifier_digits)):
                return True
            continue
        text = str(value).strip()
        whole = text.split(".")[0].lstrip("+-")
        if element.VR in TEXT_NUMBER_VRS and len(whole.lstrip("0")) > LONGEST_PLAIN_NUMBER:
            return True
        if holds_an_id(digits_of(text), identifier_digits):
            return True
    return False


def registered_uid(value: str) -> bool:
    """Return whether a UID is one the DICOM standard registers (SOP class, transfer syntax, coding scheme ...)."""
    return bool(UID(str(value).strip().rstrip("\0")).keyword)


def known_character_sets(value) -> list[str] | str:
    """Return a Specific Character Set with only the terms the standard defines (anything else is no encoding)."""
    values = list(value) if isinstance(value, (list, MultiValue)) else [value]
    kept = [str(v) for v in values if str(v).strip() in python_encoding]
    return kept if len(kept) > 1 else (kept[0] if kept else "")


def misdeclared_text(value: str) -> bool:
    """Return whether Latin-1-decoded text is really UTF-8 or EUC-KR Korean (a common PACS misconfiguration)."""
    if value.isascii() or any(ord(c) > 0xFF for c in value):
        return False
    raw = value.encode("latin-1")
    for codec in ("utf-8", "euc_kr"):
        try:
            decoded = raw.decode(codec)
        except UnicodeDecodeError:
            continue
        if any("\uac00" <= c <= "\ud7a3" or "\u3131" <= c <= "\u318e" for c in decoded):
            return True
    return False


def bound_lut_data(ds, tag: int) -> bool:
    """Cut LUT data to what its descriptor declares (text appended after a table goes); False when it has none."""
    descriptor = ds.get(LUT_DESCRIPTORS[tag])
    try:
        entries = int(descriptor.value[0]) or 65536  # 0 means 2^16 entries
    except (AttributeError, IndexError, TypeError, ValueError):
        return False
    element = ds[tag]
    if isinstance(element.value, (bytes, bytearray)):
        element.value = bytes(element.value[:entries * 2])
    elif isinstance(element.value, (list, MultiValue)):
        element.value = list(element.value)[:entries]
    return True
