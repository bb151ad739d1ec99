"""Metrics with patient-bootstrap intervals per site and per subgroup (sex, age band, device, ...) of a test set."""

import numpy as np
import pandas as pd

from crossmed.data.card import age_bands
from crossmed.data.task import Task
from crossmed.evaluation.bootstrap import BootstrapSettings
from crossmed.evaluation.metrics import task_intervals


def group_columns(rows: pd.DataFrame, subgroups: list[str]) -> dict[str, pd.Series]:
    """Return {column: value per image} for the site and every subgroup column present (age as age bands)."""
    columns = {"site": rows["site"].astype(str)}
    for column in subgroups:
        if column not in rows:
            continue
        values = age_bands(rows[column]) if column == "age" else rows[column].fillna("").astype(str).replace("", "unknown")
        columns["age_band" if column == "age" else column] = values.reset_index(drop=True).set_axis(rows.index)
    return columns


def group_table(set_name: str, rows: pd.DataFrame, labels: np.ndarray, probabilities: np.ndarray, task: Task,
                threshold: float, subgroups: list[str], settings: BootstrapSettings) -> pd.DataFrame:
    """Return one row per (group column, subgroup, metric): value, interval, images, patients, positives, reliability.

    Every subgroup is resampled from the set's own generator, so a subgroup holding the whole set gets the set's interval.
    """
    records, patients = [], rows["patient_id"].to_numpy()
    for column, values in group_columns(rows, subgroups).items():
        for value in sorted(values.unique()):
            mask = (values == value).to_numpy()
            intervals, _ = task_intervals(task, labels[mask], probabilities[mask], patients[mask], settings,
                                          settings.generator(set_name), threshold)
            counts = {"images": int(mask.sum()), "patients": int(pd.Series(patients[mask]).nunique()),
                      "positives": int(labels[mask, 0].sum()) if task.type == "binary" else None}
            records += [{"set": set_name, "group": column, "subgroup": value, "metric": metric, **result, **counts}
                        for metric, result in intervals.items()]
    return pd.DataFrame.from_records(records)
