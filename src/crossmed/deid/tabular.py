"""Pseudonymise a clinical table with the site key so it stays joinable with its de-identified images.

Columns are kept by an allow-list: the ID, UID and date columns are transformed, the named columns are
kept (their text searched for every patient's names and IDs in the table, and for identifiers of any kind),
and every other column stays on site.
"""

import logging
from pathlib import Path

import pandas as pd

from crossmed.deid.pseudonyms import Pseudonymizer
from crossmed.deid.text_scan import NameSet, person_name_variants, scrub_text
from crossmed.errors import InputError
from crossmed.files import atomic_path, spreadsheet_safe

log = logging.getLogger("crossmed.deidentify")
NAMES_PER_PATTERN = 400  # one compiled pattern per few hundred names: fast to build and to run over every cell


def _read(src: Path) -> pd.DataFrame:
    if not src.is_file():
        raise InputError(src, "table not found")
    try:
        return pd.read_csv(src, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(src, f"not a readable CSV ({err})") from err


def _check_columns(src: Path, table: pd.DataFrame, id_column: str, named: list[str]) -> None:
    if id_column not in table.columns:
        raise InputError(src, f"no '{id_column}' column (columns: {list(table.columns)})")
    missing = [c for c in named if c not in table.columns]
    if missing:
        raise InputError(src, f"no column(s) {missing} (columns: {list(table.columns)})")
    empty = [number for number, value in enumerate(table[id_column], start=2) if not value.strip()]
    if empty:
        raise InputError(src, f"empty '{id_column}' in row(s) {empty[:20]}: rows without a patient ID would share one "
                              "pseudonym with each other")


def _shifted_dates(src: Path, table: pd.DataFrame, column: str, real_ids: pd.Series, pseudonyms: Pseudonymizer) -> list[str]:
    """Return a YYYY-MM-DD column moved by each patient's offset; raise InputError naming the first bad cell."""
    shifted = []
    for number, (value, real_id) in enumerate(zip(table[column], real_ids), start=2):
        if not value.strip():
            shifted.append("")
            continue
        try:
            moved = pd.Timestamp(value) + pd.Timedelta(days=pseudonyms.date_offset_days(real_id))
        except (ValueError, OverflowError) as err:
            raise InputError(src, f"row {number}, column '{column}': not a date ({err.__class__.__name__})") from err
        shifted.append(moved.strftime("%Y-%m-%d"))
    return shifted


def _everyone(table: pd.DataFrame, id_column: str, name_columns: tuple[str, ...]) -> NameSet:
    """Return the names and IDs of every row: a note in one row can name another patient (a mother, a twin)."""
    terms = [v for column in name_columns for name in table[column] for v in person_name_variants(name)]
    terms += [v.strip() for v in table[id_column] if len(v.strip()) >= 3]
    unique = list(dict.fromkeys(terms))
    return NameSet((tuple(unique[i:i + NAMES_PER_PATTERN]) for i in range(0, len(unique), NAMES_PER_PATTERN)), combined=True)


def deidentify_table(src: str | Path, dst: str | Path, pseudonyms: Pseudonymizer, id_column: str = "patient_id",
                     keep_columns: tuple[str, ...] = (), name_columns: tuple[str, ...] = (), age_column: str | None = "age",
                     oldest_age: int = 90, uid_columns: tuple[str, ...] = ("sop_instance_uid",),
                     date_columns: tuple[str, ...] = ()) -> int:
    """Write `src` CSV to `dst` with pseudonymous IDs, UIDs and shifted dates, only the allowed columns kept; return rows."""
    src, dst = Path(src), Path(dst)
    table = _read(src)
    _check_columns(src, table, id_column, [*keep_columns, *name_columns])
    real_ids = table[id_column].copy()
    everyone = _everyone(table, id_column, name_columns)
    out = pd.DataFrame({id_column: [pseudonyms.patient_id(v) for v in real_ids]})
    for column in table.columns:
        if column in uid_columns:
            out[column] = [pseudonyms.uid(v) if v else v for v in table[column]]
        elif column in date_columns:
            out[column] = _shifted_dates(src, table, column, real_ids, pseudonyms)
        elif column in keep_columns and column != id_column:
            out[column] = [spreadsheet_safe(scrub_text(v, everyone)[0]) for v in table[column]]
    if age_column and age_column in out.columns:
        ages = pd.to_numeric(out[age_column], errors="coerce")
        out[age_column] = [str(min(int(a), oldest_age)) if pd.notna(a) else "" for a in ages]
    with atomic_path(dst) as tmp:
        out.to_csv(tmp, index=False)
    left = [c for c in table.columns if c not in out.columns]
    log.info("pseudonymised %d rows of %s into %s; kept %s, left on site %s", len(out), src, dst, list(out.columns), left)
    return len(out)
