"""Shift DICOM DA and DT values by whole days, keeping their format."""

from datetime import date, timedelta


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
    return shift_da(value[:8], days) + value[8:]
