"""One site's validation of a model as aggregates only: metrics with patient-bootstrap intervals, counts at the
saved operating point, calibration, an ROC curve on a fixed grid and subgroups, with small cells suppressed.

Nothing here is per case: no identifier, no single probability, and no group, calibration bin or curve step that
would stand for fewer than `min_patients` patients. What a site sends to the coordinator is this and nothing else.
"""

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from crossmed.data.task import Task
from crossmed.evaluation.bootstrap import BootstrapSettings
from crossmed.evaluation.calibration import calibration_pairs, calibration_summary, reliability_bins
from crossmed.evaluation.groups import group_table
from crossmed.evaluation.metrics import task_intervals

CALIBRATION_BINS = 10
ROC_GRID = np.round(np.linspace(0.0, 1.0, 21), 2)  # false-positive rates the ROC curve is read at
SUPPRESSED = "suppressed"


def _counts_at_threshold(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict:
    """Return the 2 x 2 table of a binary set at the threshold."""
    actual, predicted = labels[:, 0].astype(int), (probabilities[:, 1] >= threshold).astype(int)
    return {"true_positive": int(((actual == 1) & (predicted == 1)).sum()),
            "false_positive": int(((actual == 0) & (predicted == 1)).sum()),
            "false_negative": int(((actual == 1) & (predicted == 0)).sum()),
            "true_negative": int(((actual == 0) & (predicted == 0)).sum())}


def _roc_on_grid(labels: np.ndarray, probabilities: np.ndarray) -> dict | None:
    """Return the ROC curve's sensitivity at fixed false-positive rates (no thresholds: those are single cases' scores)."""
    if len(np.unique(labels[:, 0])) < 2:
        return None
    fpr, tpr, _ = roc_curve(labels[:, 0], probabilities[:, 1])
    return {"fpr": ROC_GRID.tolist(), "tpr": np.round(np.interp(ROC_GRID, fpr, tpr), 4).tolist()}


def _reliability(task: Task, labels: np.ndarray, probabilities: np.ndarray, min_cases: int) -> list[dict]:
    """Return the reliability bins that hold at least `min_cases` cases (fewer are suppressed: a bin of one is one case)."""
    table = reliability_bins(*calibration_pairs(task, labels, probabilities), CALIBRATION_BINS).dropna()
    records = []
    for row in table.to_dict("records"):
        count = int(row["count"])
        shown = count >= min_cases
        records.append({"bin": int(row["bin"]), "lower": row["lower"], "upper": row["upper"], "count": count if shown else SUPPRESSED,
                        "mean_predicted": round(float(row["mean_predicted"]), 4) if shown else None,
                        "observed": round(float(row["observed"]), 4) if shown else None})
    return records


def _subgroups(table: pd.DataFrame, min_patients: int) -> list[dict]:
    """Return the subgroup rows, with the values and counts of groups under `min_patients` patients suppressed."""
    records = []
    for row in table.drop(columns=["set"]).to_dict("records"):
        if row["patients"] < min_patients:
            row = {key: row[key] for key in ("group", "subgroup", "metric")} | {"suppressed": f"fewer than {min_patients} patients"}
        else:
            row = {key: (None if isinstance(value, float) and np.isnan(value) else value) for key, value in row.items()}
        records.append(row)
    return records


def site_set_report(task: Task, rows: pd.DataFrame, labels: np.ndarray, probabilities: np.ndarray, threshold: float,
                    settings: BootstrapSettings, subgroups: list[str], set_name: str, min_patients: int) -> dict:
    """Return one evaluation set of a site as aggregates: intervals, counts, calibration, ROC grid and subgroups."""
    patients = rows["patient_id"].to_numpy()
    intervals, _ = task_intervals(task, labels, probabilities, patients, settings, settings.generator(set_name), threshold)
    report = {"images": int(len(labels)), "patients": int(pd.Series(patients).nunique()), "metrics": intervals,
              "calibration": calibration_summary(task, labels, probabilities, CALIBRATION_BINS)
              | {"bins": _reliability(task, labels, probabilities, min_patients)}}
    if task.type == "binary":
        report["positives"] = int(labels[:, 0].sum())
        report["at_operating_point"] = _counts_at_threshold(labels, probabilities, threshold) | {"threshold": threshold}
        roc = _roc_on_grid(labels, probabilities) if report["patients"] >= min_patients else None
        if roc:
            report["roc"] = roc
    groups = group_table(set_name, rows, labels, probabilities, task, threshold, subgroups, settings)
    report["subgroups"] = _subgroups(groups[groups["group"] != "site"], min_patients)
    return report
