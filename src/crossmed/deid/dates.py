"""Shift DICOM DA and DT values by whole days, keeping their format; tell a time from text written in a time's place."""

import re
from datetime import date, timedelta

TM_SYNTAX = re.compile(r"\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?|\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?")
DT_TIME_SYNTAX = re.compile(r"(?:\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?(?:[+-]\d{4})?")


def is_datetime(value: str) -> bool:
    """Return whether a value is a DICOM DT: a date (YYYY, YYYYMM or YYYYMMDD) and then only a time and UTC offset."""
    value = str(value).strip()
    head = len(value) if len(value) < 8 else 8
    return value[:head].isdigit() and head in (4, 6, 8) and bool(DT_TIME_SYNTAX.fullmatch(value[head:]))


def is_time(value: str) -> bool:
    """Return whether a value is a DICOM TM (HHMMSS.FFFFFF, any part after the hour optional; old HH:MM:SS too)."""
    return bool(TM_SYNTAX.fullmatch(str(value).strip()))


def shift_da(value: str, days: int) -> str:
    """Return a DA value (YYYYMMDD) moved by `days`; raise ValueError if it is not a date."""
    value = value.strip()
    if len(value) != 8 or not value.isdigit():
        raise ValueError(f"not a DA value: {value!r}")
    shifted = date(int(value[0:4]), int(value[4:6]), int(value[6:8])) + timedelta(days=days)
    return shifted.strftime("%Y%m%d")


def shift_dt(value: str, days: int) -> str:
    """Return a DT value moved by `days`; time, fraction and UTC offset are kept."""
    value = value.strip()
    if len(value) < 8:
        raise ValueError(f"DT value without a full date: {value!r}")
    if not DT_TIME_SYNTAX.fullmatch(value[8:]):
        raise ValueError(f"DT value with something other than a time after its date: {value!r}")
    return shift_da(value[:8], days) + value[8:]
