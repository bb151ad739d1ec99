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
from crossmed.errors import CrossmedError
from crossmed.evaluation.groups import group_columns, group_table
from crossmed.evaluation.metrics import task_intervals

CALIBRATION_BINS = 10
ROC_GRID = np.round(np.linspace(0.0, 1.0, 21), 2)  # false-positive rates the ROC curve is read at
OTHER = "other (small groups together)"


class TooFewPatients(CrossmedError):
    """A set too small to report on without saying something about single patients."""


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


def _reliability(task: Task, labels: np.ndarray, probabilities: np.ndarray, patients: np.ndarray, min_patients: int) -> list[dict]:
    """Return reliability bins merged with their neighbours until each holds at least `min_patients` patients and as many
    cases: every bin is shown, so none can be recovered as the whole minus the others."""
    outcome, scores = calibration_pairs(task, labels, probabilities)
    repeat = len(outcome) // len(patients)  # multi-label tasks judge every label: each case's patient once per label
    owners = np.repeat(patients, repeat) if repeat > 1 else patients
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    index = np.clip(np.digitize(scores, edges[1:-1]), 0, CALIBRATION_BINS - 1)
    groups, current = [], []
    for b in range(CALIBRATION_BINS):
        current.append(b)
        inside = np.isin(index, current)
        if inside.sum() >= min_patients and len(set(owners[inside])) >= min_patients:
            groups.append(current)
            current = []
    if current:  # the last bins hold too few: they join the group before them
        if groups:
            groups[-1] += current
        else:
            return []  # the whole set is smaller than min_patients
    records = []
    for bins in groups:
        inside = np.isin(index, bins)
        if not inside.any():
            continue
        records.append({"lower": round(edges[bins[0]], 4), "upper": round(edges[bins[-1] + 1], 4), "count": int(inside.sum()),
                        "mean_predicted": round(float(scores[inside].mean()), 4), "observed": round(float(outcome[inside].mean()), 4)})
    return records


def _folded(rows: pd.DataFrame, subgroups: list[str], min_patients: int) -> tuple[pd.DataFrame, list[str]]:
    """Return rows whose subgroup values of fewer than `min_patients` patients are folded into 'other', the next
    smallest joining until 'other' is as large too (so no group is the whole minus the others), and the columns left; a
    column whose groups would all fold goes."""
    patients = rows["patient_id"].to_numpy()
    out, kept = rows[["site", "patient_id"]].copy(), []
    for column, values in group_columns(rows, subgroups).items():
        if column == "site":
            continue
        values = values.astype(str).to_numpy().copy()
        sizes = pd.Series(patients).groupby(values).nunique().sort_values(kind="stable")
        small = [v for v, n in sizes.items() if n < min_patients]
        while small and len(set(patients[np.isin(values, small)])) < min_patients and len(small) < len(sizes):
            small.append(next(v for v in sizes.index if v not in small))
        if len(small) >= len(sizes):  # every group folded: the column would only repeat the whole set
            continue
        values[np.isin(values, small)] = OTHER
        out[column] = values
        kept.append(column)
    return out, kept


def site_set_report(task: Task, rows: pd.DataFrame, labels: np.ndarray, probabilities: np.ndarray, threshold: float,
                    settings: BootstrapSettings, subgroups: list[str], set_name: str, min_patients: int) -> dict:
    """Return one evaluation set of a site as aggregates: intervals, counts, calibration, ROC grid and subgroups; raise
    TooFewPatients when the set, or a class in it, has fewer than `min_patients` patients."""
    patients = rows["patient_id"].to_numpy()
    per_class = [len(set(patients[labels[:, 0] == c])) for c in np.unique(labels[:, 0])] if not task.multilabel else []
    if len(set(patients)) < min_patients or (task.type == "binary" and (len(per_class) < 2 or min(per_class) < min_patients)):
        raise TooFewPatients(f"{set_name}: {len(set(patients))} patients ({per_class} per class): fewer than {min_patients} "
                             "patients in the set or in a class; nothing is reported of it")
    intervals, _ = task_intervals(task, labels, probabilities, patients, settings, settings.generator(set_name), threshold)
    report = {"images": int(len(labels)), "patients": int(len(set(patients))), "metrics": intervals,
              "calibration": calibration_summary(task, labels, probabilities, CALIBRATION_BINS)
              | {"bins": _reliability(task, labels, probabilities, patients, min_patients)}}
    if task.type == "binary":
        report["positives"] = int(labels[:, 0].sum())
        report["at_operating_point"] = _counts_at_threshold(labels, probabilities, threshold) | {"threshold": threshold}
        roc = _roc_on_grid(labels, probabilities)
        if roc:
            report["roc"] = roc
    folded, columns = _folded(rows, subgroups, min_patients)
    groups = group_table(set_name, folded, labels, probabilities, task, threshold, columns, settings) if columns else None
    report["subgroups"] = [] if groups is None else [
        {key: (None if isinstance(value, float) and np.isnan(value) else value) for key, value in row.items()}
        for row in groups[groups["group"] != "site"].drop(columns=["set"]).to_dict("records")]
    return report
