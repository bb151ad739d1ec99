"""The CSV manifest of an image folder (image, patient, site, label, subgroups): its columns, reading and checks."""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crossmed.data.image_files import image_kind
from crossmed.data.split import SPLITS
from crossmed.data.task import Task
from crossmed.errors import InputError, report_problems

LABEL_SEPARATOR = ";"


@dataclass(frozen=True)
class ManifestSpec:
    """Which manifest columns hold what, and the task their labels describe (conf/data/folder.yaml)."""

    image: str
    patient_id: str
    site: str
    label: str
    split: str | None
    subgroups: tuple[str, ...]
    task: Task

    @classmethod
    def from_config(cls, data_cfg) -> "ManifestSpec":
        """Return the spec of `data` config (source: folder)."""
        columns = data_cfg.columns
        task = Task(str(data_cfg.task), tuple(str(c) for c in data_cfg.classes), int(data_cfg.channels),
                    int(data_cfg.spatial_dims))
        return cls(columns.image, columns.patient_id, columns.site, columns.label, columns.get("split") or None,
                   tuple(data_cfg.subgroups or ()), task)

    @property
    def required(self) -> list[str]:
        """Return the columns the manifest must have."""
        return [self.image, self.patient_id, self.site, self.label, *([self.split] if self.split else [])]


def read_manifest(path: Path, spec: ManifestSpec) -> pd.DataFrame:
    """Return the manifest as strings; raise InputError when it is missing, unreadable or lacks a column."""
    if not path.is_file():
        raise InputError(path, "manifest not found")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(path, f"not a readable CSV ({err})") from err
    missing = [c for c in [*spec.required, *spec.subgroups] if c not in table.columns]
    if missing:
        raise InputError(path, f"missing column(s) {missing} (has {list(table.columns)}); see data.columns")
    return table


def parse_label(value: str, task: Task) -> list[int] | None:
    """Return the label row of a manifest value (class name or index; names joined by ';' for multi-label), or None."""
    names = list(task.classes)
    if task.multilabel:
        parts = [p.strip() for p in value.split(LABEL_SEPARATOR) if p.strip()]
        if any(p not in names for p in parts):
            return None
        return [int(name in parts) for name in names]
    value = value.strip()
    if value in names:
        return [names.index(value)]
    if value.isdigit() and int(value) < len(names):
        return [int(value)]
    return None


def check_manifest(path: Path, table: pd.DataFrame, spec: ManifestSpec, root: Path) -> np.ndarray:
    """Return the labels (N, label_columns); raise one InputError listing every bad row of the manifest."""
    labels, problems = manifest_problems(table, spec, root)
    report_problems(path, problems)
    return labels


def manifest_problems(table: pd.DataFrame, spec: ManifestSpec, root: Path,
                      show_values: bool = True) -> tuple[np.ndarray, list[str]]:
    """Return the labels (N, label_columns) and one line per problem: missing file, bad label, duplicate, empty ID.

    Lines name the row, and quote the image path and cell values only with `show_values` (a raw export's paths
    and cells can hold patient names and IDs).
    """
    problems, labels = [], []
    duplicated = table.duplicated(subset=[spec.image], keep="first")
    for number, values in enumerate(table.to_dict("records"), start=2):  # row 1 is the header
        where = f"row {number} ({values[spec.image]})" if show_values else f"row {number}"
        quoted = (lambda column: repr(values[column])) if show_values else (lambda column: f"in column '{column}'")
        label = parse_label(values[spec.label], spec.task)
        labels.append(label or [0] * spec.task.label_columns)
        if duplicated.iloc[number - 2]:
            problems.append(f"{where}: image listed twice")
        if not values[spec.image]:
            problems.append(f"row {number}: empty '{spec.image}'")
        elif image_kind(values[spec.image]) is None:
            problems.append(f"{where}: unknown image type (known: .dcm, .nii, .nii.gz, .png, .jpg, .jpeg)")
        elif not (root / values[spec.image]).is_file():
            problems.append(f"{where}: file not found under {root}")
        for column in (spec.patient_id, spec.site):
            if not values[column].strip():
                problems.append(f"{where}: empty '{column}'")
        if label is None:
            problems.append(f"{where}: unknown label {quoted(spec.label)} (classes: {', '.join(spec.task.classes)})")
        if spec.split and values[spec.split] not in SPLITS:
            problems.append(f"{where}: unknown split {quoted(spec.split)} (known: {', '.join(SPLITS)})")
    return np.array(labels, dtype=np.int64).reshape(len(table), spec.task.label_columns), problems


def image_id(path: str) -> str:
    """Return the file name of an image without its image-type suffix (pseudonymous after de-identification)."""
    return re.sub(r"\.(nii\.gz|nii|dcm|dicom|png|jpe?g)$", "", Path(path).name, flags=re.IGNORECASE)
