"""Formats and checksums of the national personal identifiers used by the partner sites.

Korean resident registration numbers (주민등록번호, YYMMDD-GNNNNNC) and Estonian personal codes
(isikukood, GYYMMDDSSSC). The synthesizer makes valid ones; de-identification finds them in text.
"""

import re
from datetime import date

# Separators people type inside a number: hyphens and dashes of every width, dot, slash, space (ASCII or full-width).
_SEP_CHARS = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\uff0d.\uff0e/\uff0f"
_SPACE = "[ \\t\u00a0\u3000]"
_SEP = rf"(?:{_SPACE}?[{_SEP_CHARS}]{_SPACE}?|{_SPACE})"
# The patterns open with the digits themselves and check "no digit before" after them ((?<!\d\d\d) looks three
# back), so the regex engine can skip through text to the next digit instead of testing every position.
KOREAN_RRN_PATTERN = re.compile(rf"(\d{{2}})(?<!\d\d\d)(\d{{2}})(\d{{2}}){_SEP}?(\d)(\d{{5}})(\d)(?!\d)")
# An isikukood is written 38401010123, 3840101 0123 or 384 0101 0123: one separator may sit between any two digits.
ESTONIAN_CODE_PATTERN = re.compile(rf"[1-6\uff11-\uff16](?<!\d\d)(?:(?:[{_SEP_CHARS}]|{_SPACE})?\d){{10}}(?!\d)")
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
    """Return whether the two-digit year, month and day make a real date in `century`."""
    try:
        date(century + int(yy), int(mm), int(dd))
    except ValueError:
        return False
    return True


def _overlapping(pattern: re.Pattern, text: str, valid) -> list[tuple[int, int]]:
    """Return the spans of `pattern` matches in `text` that `valid` accepts."""
    # A candidate that fails validation may hide a valid one starting a digit later (1 38401010123), so the
    # search resumes one character after a rejected candidate instead of after its end.
    spans, pos = [], 0
    while (m := pattern.search(text, pos)) is not None:
        if valid(m):
            spans.append(m.span())
            pos = m.end()
        else:
            pos = m.start() + 1
    return spans


def _rrn_valid(m: re.Match) -> bool:
    """Return whether an RRN candidate has a known gender digit and a real birth date."""
    yy, mm, dd, gender = m.group(1), m.group(2), m.group(3), int(m.group(4))
    century = {1: 1900, 2: 1900, 3: 2000, 4: 2000, 5: 1900, 6: 1900, 7: 2000, 8: 2000}.get(gender)
    return century is not None and _valid_date(yy, mm, dd, century)


def _estonian_valid(m: re.Match) -> bool:
    """Return whether an isikukood candidate has a known century digit, a real birth date and a valid checksum."""
    digits = "".join(filter(str.isdecimal, m.group(0)))
    if not digits.isascii():
        digits = "".join(str(int(c)) for c in digits)  # full-width digits typed in East Asian text
    century = {1: 1800, 2: 1800, 3: 1900, 4: 1900, 5: 2000, 6: 2000}.get(int(digits[0]))
    return (century is not None and _valid_date(digits[1:3], digits[3:5], digits[5:7], century)
            and estonian_code_check_digit(digits[:10]) == int(digits[10]))


def find_korean_rrns(text: str) -> list[tuple[int, int]]:
    """Return (start, end) spans of plausible Korean RRNs (any separator or none): a real date and a known gender digit."""
    # No checksum test: numbers issued since October 2020 have a random last digit.
    return _overlapping(KOREAN_RRN_PATTERN, text, _rrn_valid)


def find_estonian_codes(text: str) -> list[tuple[int, int]]:
    """Return (start, end) spans of Estonian personal codes (separators allowed) whose date and checksum are valid."""
    return _overlapping(ESTONIAN_CODE_PATTERN, text, _estonian_valid)
