"""The project's local MLflow store (sqlite + an artifact folder beside it), kept usable when the checkout moves.

MLflow records absolute artifact locations (`file:///<checkout>/experiments/mlartifacts/...`) in the
experiment, every run and every registered model version. After a copy or move those point at the old
folder: a copy writes into the original, and once the original is gone its UI shows no artifacts.
`relocate` rewrites every such location to the artifact folder beside the database; crossmed calls it
whenever it opens the store (every stage, `crossmed ui`), so a moved checkout works on first use.
"""

import logging
import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlparse

log = logging.getLogger("crossmed.tracking")
ARTIFACT_DIR_NAME = "mlartifacts"
# Every column in which MLflow's SQL store keeps an artifact location (tables absent in older schemas are skipped).
LOCATION_COLUMNS = {"experiments": ("artifact_location",), "runs": ("artifact_uri",),
                    "model_versions": ("source", "storage_location"), "logged_models": ("artifact_location",)}


def local_database(uri: str) -> Path | None:
    """Return the sqlite file of a `sqlite:///` tracking URI, or None for any other store."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def artifact_root(database: Path) -> str:
    """Return the artifact folder beside a local store's database, as a file URI."""
    return (database.parent.resolve() / ARTIFACT_DIR_NAME).as_uri()


def _relocated(value: str | None, root: str) -> str | None:
    """Return `value` moved under `root` when it is a local location under another '.../mlartifacts' folder, else None."""
    if not value:
        return None
    path = unquote(urlparse(value).path) if value.startswith("file:") else value
    parts = Path(path).parts
    if not Path(path).is_absolute() or ARTIFACT_DIR_NAME not in parts:
        return None
    at = len(parts) - 1 - parts[::-1].index(ARTIFACT_DIR_NAME)
    rest = "/".join(parts[at + 1:])
    moved = f"{root}/{rest}" if rest else root
    return None if moved == value else moved


def relocate(uri: str) -> int:
    """Point every artifact location in a local sqlite store at the folder beside it; return how many were changed."""
    database = local_database(uri)
    if database is None or not database.is_file():
        return 0
    root, changed = artifact_root(database), 0
    with sqlite3.connect(database) as connection:
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table, columns in LOCATION_COLUMNS.items():
            if table not in tables:
                continue
            for column in columns:
                for rowid, value in connection.execute(f"SELECT rowid, {column} FROM {table}").fetchall():
                    moved = _relocated(value, root)
                    if moved is not None:
                        connection.execute(f"UPDATE {table} SET {column} = ? WHERE rowid = ?", (moved, rowid))
                        changed += 1
    if changed:
        log.info("MLflow store %s was moved or copied: %d artifact location(s) now point into %s", database, changed, root)
    return changed
