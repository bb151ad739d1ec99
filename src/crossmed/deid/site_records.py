"""The site-only record: which source file each pseudonymous reference stands for, and why it was refused.

It names source paths (hospital export paths hold patient IDs, names and dates), so it is written only to a
folder outside every output, documented as never shared, never committed and never given to DVC.
"""

import csv
from pathlib import Path

from crossmed.files import write_csv_atomic

REJECTED_SOURCES_FILE = "rejected_sources.csv"
COLUMNS = ["reference", "source_path", "reason_code", "detail"]
NOTICE = ("crossmed site-only records. These files name source files, whose paths can hold patient IDs,\n"
          "names and dates. Keep them on site: never share, commit, upload or add them to DVC.\n")


def _readable(text: str) -> str:
    """Return a path as text a CSV can hold, with bytes that are not UTF-8 shown as escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def record_rejections(folder: Path, rows: list[dict]) -> Path:
    """Merge (reference, source_path, reason_code, detail) rows into the folder's rejected_sources.csv; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.txt").write_text(NOTICE, encoding="utf-8")
    path = folder / REJECTED_SOURCES_FILE
    merged: dict[str, dict] = {}
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as fh:
            merged = {row["reference"]: row for row in csv.DictReader(fh)}
    for row in rows:
        merged[row["reference"]] = {**row, "source_path": _readable(row["source_path"]), "detail": _readable(row["detail"])}
    write_csv_atomic(path, COLUMNS, sorted(merged.values(), key=lambda r: r["reference"]))
    return path
