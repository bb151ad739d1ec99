"""Pseudonymise a clinical table with the site key so it stays joinable with its de-identified images."""

import logging
from pathlib import Path

import pandas as pd

from crossmed.deid.pseudonyms import Pseudonymizer
from crossmed.errors import InputError
from crossmed.files import atomic_path

log = logging.getLogger("crossmed.deidentify")
UID_COLUMN_SUFFIX = "_uid"


def deidentify_table(src: str | Path, dst: str | Path, pseudonyms: Pseudonymizer, id_column: str = "patient_id",
                     drop_columns: tuple[str, ...] = (), age_column: str | None = "age", oldest_age: int = 90,
                     uid_columns: tuple[str, ...] = ("sop_instance_uid",), date_columns: tuple[str, ...] = ()) -> int:
    """Write `src` CSV to `dst` with pseudonymous IDs and UIDs, identifier columns dropped, ages over 89 grouped; return rows."""
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise InputError(src, "table not found")
    try:
        table = pd.read_csv(src, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(src, f"not a readable CSV ({err})") from err
    if id_column not in table.columns:
        raise InputError(src, f"no '{id_column}' column (columns: {list(table.columns)})")
    real_ids = table[id_column].copy()
    table[id_column] = [pseudonyms.patient_id(v) for v in real_ids]
    for column in uid_columns:
        if column in table.columns:
            table[column] = [pseudonyms.uid(v) if v else v for v in table[column]]
    for column in date_columns:
        if column in table.columns:
            shifted = [pd.Timestamp(d) + pd.Timedelta(days=pseudonyms.date_offset_days(p)) if d else None
                       for d, p in zip(table[column], real_ids)]
            table[column] = [d.strftime("%Y-%m-%d") if d is not None else "" for d in shifted]
    table = table.drop(columns=[c for c in drop_columns if c in table.columns])
    if age_column and age_column in table.columns:
        ages = pd.to_numeric(table[age_column], errors="coerce")
        table[age_column] = [str(min(int(a), oldest_age)) if pd.notna(a) else "" for a in ages]
    with atomic_path(dst) as tmp:
        table.to_csv(tmp, index=False)
    log.info("pseudonymised %d rows of %s into %s", len(table), src, dst)
    return len(table)
