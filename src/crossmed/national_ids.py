"""Formats and checksums of the national personal identifiers used by the partner sites.

Korean resident registration numbers (주민등록번호, YYMMDD-GNNNNNC) and Estonian personal codes
(isikukood, GYYMMDDSSSC). The synthesizer makes valid ones; de-identification finds them in text.
"""

import re
from datetime import date

KOREAN_RRN_PATTERN = re.compile(r"(?<!\d)(\d{2})(\d{2})(\d{2})\s?[-‐–]?\s?([1-8])(\d{5})(\d)(?!\d)")
ESTONIAN_CODE_PATTERN = re.compile(r"(?<!\d)([1-6])(\d{2})(\d{2})(\d{2})(\d{3})(\d)(?!\d)")
_RRN_WEIGHTS = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
_EE_WEIGHTS_1 = (1, 2, 3, 4, 5, 6, 7, 8, 9, 1)
_EE_WEIGHTS_2 = (3, 4, 5, 6, 7, 8, 9, 1, 2, 3)


def korean_rrn_check_digit(first12: str) -> int:
    """Return the check digit of a Korean RRN from its first 12 digits (pre-2020 scheme)."""
    total = sum(int(d) * w for d, w in zip(first12, _RRN_WEIGHTS, strict=True))
    return (11 - total % 11) % 10


def estonian_code_check_digit(first10: str) -> int:
    """Return the check digit of an Estonian personal code from its first 10 digits."""
    for weights in (_EE_WEIGHTS_1, _EE_WEIGHTS_2):
        remainder = sum(int(d) * w for d, w in zip(first10, weights, strict=True)) % 11
        if remainder < 10:
            return remainder
    return 0


def make_korean_rrn(birth: date, male: bool, serial: int) -> str:
    """Return a checksum-valid Korean RRN, formatted YYMMDD-GNNNNNC."""
    century_code = (1 if male else 2) if birth.year < 2000 else (3 if male else 4)
    first12 = f"{birth:%y%m%d}{century_code}{serial % 100000:05d}"
    return f"{first12[:6]}-{first12[6:]}{korean_rrn_check_digit(first12)}"


def make_estonian_code(birth: date, male: bool, serial: int) -> str:
    """Return a checksum-valid Estonian personal code GYYMMDDSSSC."""
    century_code = (3 if male else 4) if birth.year < 2000 else (5 if male else 6)
    first10 = f"{century_code}{birth:%y%m%d}{serial % 1000:03d}"
    return f"{first10}{estonian_code_check_digit(first10)}"


def _valid_date(yy: str, mm: str, dd: str, century: int) -> bool:
    try:
        date(century + int(yy), int(mm), int(dd))
    except ValueError:
        return False
    return True


def find_korean_rrns(text: str) -> list[tuple[int, int]]:
    """Return (start, end) spans of plausible Korean RRNs: a real date and a known gender digit."""
    spans = []
    for m in KOREAN_RRN_PATTERN.finditer(text):
        yy, mm, dd, gender = m.group(1), m.group(2), m.group(3), int(m.group(4))
        century = {1: 1900, 2: 1900, 3: 2000, 4: 2000, 5: 1900, 6: 1900, 7: 2000, 8: 2000}[gender]
        if _valid_date(yy, mm, dd, century):
            spans.append(m.span())
    return spans


def find_estonian_codes(text: str) -> list[tuple[int, int]]:
    """Return (start, end) spans of Estonian personal codes whose date and checksum are valid."""
    spans = []
    for m in ESTONIAN_CODE_PATTERN.finditer(text):
        digits = m.group(0)
        century = {1: 1800, 2: 1800, 3: 1900, 4: 1900, 5: 2000, 6: 2000}[int(digits[0])]
        if _valid_date(m.group(2), m.group(3), m.group(4), century) and estonian_code_check_digit(digits[:10]) == int(digits[10]):
            spans.append(m.span())
    return spans
