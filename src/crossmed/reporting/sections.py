"""Sections the validation report and the model card share: data, calibration, subgroups, limitations, figures with intervals."""

from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from crossmed.data.card import leakage_sentence
from crossmed.reporting.documents import markdown_table
from crossmed.sources import get_source

METRIC_NAMES = {"auc": "ROC AUC", "pr_auc": "PR AUC (average precision)", "accuracy": "Accuracy",
                "balanced_accuracy": "Balanced accuracy", "sensitivity": "Sensitivity", "specificity": "Specificity",
                "ppv": "PPV", "npv": "NPV", "f1": "F1", "brier": "Brier score", "mean_absolute_error": "Mean absolute error (grades)"}

HEADLINE = {"binary": ("auc", "sensitivity", "specificity"), "multilabel": ("auc", "accuracy")}

HEADLINE_OTHER = ("auc", "accuracy", "balanced_accuracy")


UNRELIABLE_NOTE = ("† marks an interval that should not be relied on: too few cases of some class, or every resample "
                   "agreeing (a zero-width interval).")


def with_ci(result: dict) -> str:
    """Return 'value (low to high)', with † when the interval is marked unreliable, or 'undefined'."""
    if result.get("value") is None or pd.isna(result.get("value")):
        return "undefined"
    mark = "" if bool(result.get("reliable", True)) else " †"
    return f"{result['value']:.3f} ({result['ci_low']:.3f} to {result['ci_high']:.3f}){mark}"


def data_section(card: dict, cfg: DictConfig) -> list[str]:
    """Return the data section: source, sites, de-identification, splits by site and the preprocessing steps."""
    rows = []
    for split, parts in card["splits"].items():
        for site, summary in parts["sites"].items():
            rows.append([split, site, summary["images"], summary["patients"],
                         ", ".join(f"{k} {v}" for k, v in summary["labels"].items())])
    leakage = card["leakage_check"]
    return ["## Data", "",
            f"Source: **{cfg.data.source}** ({get_source(cfg.data.source).format}); "
            f"sites {', '.join(card['sites'])}; external (held-out) sites: "
            f"{', '.join(card['external_sites']) or 'none'}. {card['images']} images of {card['patients']} patients. "
            f"Task: {card['task']['type']} ({', '.join(card['task']['classes'])}).", "",
            f"De-identification: DICOM PS3.15 Basic Profile with options {', '.join(cfg.deid.get('options', [])) or 'none'}, "
            "per-site keyed pseudonyms, run on site before data leave the hospital.", "",
            "Splits are by patient (no patient in two splits). " + leakage_sentence(leakage), "",
            *markdown_table(["split", "site", "images", "patients", "labels"], rows),
            "Preprocessing: " + "; ".join(card["preprocessing"]) + ".", ""]


def metric_name(key: str) -> str:
    """Return a metric's readable name (per-class AUCs as 'ROC AUC, <class>')."""
    return METRIC_NAMES.get(key) or (f"ROC AUC, {key[4:]}" if key.startswith("auc_") else key)


def confusion_counts_section(evaluation: Path, operating: dict) -> list[str]:
    """Return the 2 x 2 table at the operating point of each binary test set (from predictions_<set>.csv), or nothing."""
    rows = []
    for path in sorted(evaluation.glob("predictions_*.csv")):
        table = pd.read_csv(path)
        if not {"actual", "predicted", "probability"} <= set(table.columns):
            return []  # not a binary task
        actual, predicted = table["actual"].astype(int), table["predicted"].astype(int)
        rows.append([path.stem.removeprefix("predictions_").replace("_", " "), int(((actual == 1) & (predicted == 1)).sum()),
                     int(((actual == 0) & (predicted == 1)).sum()), int(((actual == 1) & (predicted == 0)).sum()),
                     int(((actual == 0) & (predicted == 0)).sum()), len(table)])
    if not rows:
        return []
    return [f"Counts at the operating point (threshold {operating['threshold']:.4f}, chosen on validation):", "",
            *markdown_table(["set", "true positive", "false positive", "false negative", "true negative", "images"], rows)]


def calibration_section(calibration: dict) -> list[str]:
    """Return the calibration section: Brier and ECE per set, before and after temperature scaling."""
    rows = []
    for name, parts in calibration["sets"].items():
        after = parts.get("after_temperature_scaling", {})
        rows.append([name, parts["before"]["brier"], parts["before"]["ece"], after.get("brier"), after.get("ece")])
    temperature = calibration.get("temperature")
    return ["## Calibration", "",
            (f"Temperature scaling fitted on validation: T = {temperature:.3f}. " if temperature else "")
            + f"ECE over {calibration['bins']} equal-width bins of {calibration.get('judged_on', 'P(positive class)')}. "
            "Decisions and AUC do not change with temperature scaling.", "",
            *markdown_table(["set", "Brier", "ECE", "Brier after scaling", "ECE after scaling"], rows),
            "![Reliability](../evaluation/calibration.png)", ""]


def groups_section(groups: pd.DataFrame, task_type: str) -> list[str]:
    """Return one table per test set and group column with the headline metrics and their intervals."""
    headline = HEADLINE.get(task_type, HEADLINE_OTHER)
    lines = ["## Sites and subgroups", "",
             f"Each cell: value (95% patient-bootstrap interval). {UNRELIABLE_NOTE}", ""]
    for (set_name, group), part in groups.groupby(["set", "group"], sort=False):
        rows = []
        for subgroup, cells in part.groupby("subgroup", sort=False):
            by_metric = cells.set_index("metric")
            positives = [int(by_metric["positives"].iloc[0])] if task_type == "binary" else []
            rows.append([f"{subgroup}", int(by_metric["images"].iloc[0]), int(by_metric["patients"].iloc[0]), *positives,
                         *[with_ci(by_metric.loc[m].to_dict()) for m in headline]])
        lines += [f"### {set_name}: by {group}", "",
                  *markdown_table([group, "images", "patients", *(["positives"] if task_type == "binary" else []),
                           *[METRIC_NAMES[m] for m in headline]], rows)]
    return lines


def limitations(cfg: DictConfig, card: dict, groups: pd.DataFrame, operating: dict) -> list[str]:
    """Return the limitations section generated from the data, the subgroups and the decision rule."""
    notes = []
    if get_source(cfg.data.source).synthetic:
        notes.append("The data are the built-in synthetic cohort: these figures demonstrate the pipeline, not clinical performance.")
    unreliable = groups[~groups["reliable"].astype(bool)][["set", "group", "subgroup"]].drop_duplicates()
    if len(unreliable):
        notes.append("Subgroups too small for reliable intervals: " + ", ".join(
            f"{r.set} {r.group}={r.subgroup}" for r in unreliable.itertuples()) + ".")
    if len(card["external_sites"]) <= 1:
        notes.append(f"External validation rests on {len(card['external_sites'])} site(s); other sites, devices and "
                     "populations may differ.")
    notes.append(f"The decision rule ({operating['method']}) was fixed on {operating['val_images']} validation images; "
                 "its sensitivity and specificity on new data carry the uncertainty shown above.")
    notes.append("Grad-CAM maps show where the network's evidence is, not why; they are not a validation of reasoning.")
    return ["## Limitations", "", *[f"- {note}" for note in notes], ""]
