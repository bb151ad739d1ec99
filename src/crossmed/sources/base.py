"""What every data source provides (acquire, de-identify, read into the processed format, describe), and the table it reads into."""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from crossmed.data.task import Task
from crossmed.errors import InputError
from crossmed.files import atomic_directory, write_json_atomic

log = logging.getLogger("crossmed.sources")
DEID_SUMMARY_FILE = "deid_summary.json"
# fill(images) writes every row's image into the (N, C, *spatial) array and returns (facts per row, [(row, problem)]).
Fill = Callable[[np.ndarray], tuple[list[dict], list[tuple[int, str]]]]


@dataclass
class SourceTable:
    """One row per image (site, patient_id, image_id, label, split, source_path, subgroups, 'path' to read), labels and task."""

    rows: pd.DataFrame
    labels: np.ndarray
    task: Task
    subgroups: list[str]
    description: dict
    preprocessing: list[str] = field(default_factory=list)
    recipe: dict = field(default_factory=dict)  # the machine-readable preprocessing (crossmed.data.recipe)


def label_strings(labels: np.ndarray) -> list[str]:
    """Return the manifest form of each label row: '2' for one label, '0;1;0' for several."""
    return [";".join(str(int(v)) for v in row) for row in labels]


class DataSource:
    """One value of data.source. Subclasses set `name` and `format` and implement `read`; the rest has defaults."""

    name = ""
    format = ""         # the data card's and the report's words for the data format (keyed by the card's source type)
    synthetic = False   # demonstration data: the report says its figures are not clinical performance

    def acquire(self, cfg) -> None:
        """Synthesize stage: check data.path, then leave a note in paths.raw (sources that read their own data)."""
        from crossmed.synthetic.cohort import write_not_synthesized

        self.check_input(cfg)  # before paths.raw is touched: a mistyped path leaves the workspace's data as it was
        write_not_synthesized(cfg.paths.raw, self.name)

    def check_input(self, cfg) -> None:
        """Raise InputError naming data.path when it does not hold what this source reads."""

    def deidentify(self, cfg) -> dict:
        """Deidentify stage: write paths.deidentified and return a summary (default: published de-identified data)."""
        return write_deidentified(cfg, lambda out: {"note": f"data.source={self.name}: published de-identified; nothing to do"})

    def read(self, cfg, deid_dir: Path) -> tuple[SourceTable, tuple[int, ...], Fill]:
        """Preprocess stage: return the source table, the processed image shape and the function filling the image array."""
        raise NotImplementedError


def write_deidentified(cfg, body: Callable[[Path], dict]) -> dict:
    """Build paths.deidentified with `body(folder)` and a summary file beside it, atomically; return body's summary."""
    from crossmed.deid.settings import settings_from_config

    out_dir = Path(cfg.paths.deidentified)
    settings_from_config(cfg.deid, b"\0" * 32, "")  # refuse bad settings before anything is read
    with atomic_directory(out_dir) as tmp:
        summary = body(tmp)
        write_json_atomic(tmp / DEID_SUMMARY_FILE, {"profile": cfg.deid.profile, "options": list(cfg.deid.options),
                                                     "source": cfg.data.source, "sites": summary})
    log.info("de-identification for data.source=%s written to %s: %s", cfg.data.source, out_dir, summary)
    return summary


def read_files_onto_grid(cfg, table: SourceTable) -> tuple[SourceTable, tuple[int, ...], Fill]:
    """Return `table` with its preprocessing steps and recipe, the grid's shape, and a fill reading its image files."""
    from crossmed.data.image_files import image_kind
    from crossmed.data.image_pipeline import GridSpec, grid_steps, process_files
    from crossmed.data.recipe import Recipe

    data = cfg.data
    grid = GridSpec(table.task.channels, table.task.spatial_dims, int(data.image_size),
                    float(data.spacing_mm) if data.get("spacing_mm") else None)
    table.preprocessing = grid_steps(grid, {image_kind(p) for p in table.rows["path"]})
    table.recipe = Recipe("grid", grid.channels, grid.spatial_dims, grid.image_size, grid.spacing_mm).as_dict()
    workers = int(data.get("workers", 1))
    return table, grid.shape, lambda out: process_files(list(table.rows["path"]), grid, out, workers)


def check_path(cfg, wanted: str, test: Callable[[Path], bool]) -> Path:
    """Return data.path; InputError when `test` fails on it (`wanted` says what it must name)."""
    path = Path(str(cfg.data.get("path") or ""))
    if not test(path):
        raise InputError(path, f"data.path must name {wanted} for data.source={cfg.data.source}: "
                               f"{'it is not one' if path.exists() else 'not found'}")
    return path
