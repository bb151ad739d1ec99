"""Where a study's images come from: each source turns its input into one table of images with labels."""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from crossmed.data.task import Task

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
