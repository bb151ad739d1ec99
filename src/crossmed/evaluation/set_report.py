"""What the evaluate stage reports, set by set and for every task type: intervals, subgroups, the external gap, calibration, curves."""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from crossmed.data.task import Task
from crossmed.evaluation.bootstrap import BootstrapSettings, difference_interval
from crossmed.evaluation.calibration import TemperatureScaling, calibration_pairs, calibration_summary, reliability_bins
from crossmed.evaluation.groups import group_table
from crossmed.evaluation.metrics import task_intervals
from crossmed.evaluation.plots import curve_figure, pr_points, roc_figure, roc_points, write_csv
from crossmed.files import write_json_atomic

log = logging.getLogger("crossmed.evaluate")
CALIBRATION_BINS = 10
CALIBRATION_JUDGED_ON = {"binary": "P(positive class)", "multiclass": "probability of the most probable class vs being right",
                         "ordinal": "probability of the most probable grade vs being right",
                         "multilabel": "every label's probability"}


def flat_intervals(intervals: dict[str, dict]) -> dict:
    """Return {metric: value, metric_ci_low: .., metric_ci_high: ..} for metrics.json (None where undefined)."""
    return {f"{name}{suffix}": result[key] for name, result in intervals.items()
            for suffix, key in (("", "value"), ("_ci_low", "ci_low"), ("_ci_high", "ci_high"))}


@dataclass
class SetReport:
    """Collects each evaluation set's results, then writes the tables and figures under `out_dir`."""

    task: Task
    out_dir: Path
    threshold: float
    settings: BootstrapSettings
    subgroups: list[str]
    temperature: TemperatureScaling | None = None
    intervals: dict = field(default_factory=dict)
    samples: dict = field(default_factory=dict)
    groups: list = field(default_factory=list)
    curves: dict = field(default_factory=dict)
    reliability: dict = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)

    def add(self, name: str, rows: pd.DataFrame, labels: np.ndarray, probabilities: np.ndarray) -> dict:
        """Evaluate one set (labels (N, label columns), probabilities (N, outputs)); return its metrics.json entry."""
        self.intervals[name], self.samples[name] = task_intervals(
            self.task, labels, probabilities, rows["patient_id"].to_numpy(), self.settings, self.settings.generator(name),
            self.threshold)
        self.groups.append(group_table(name, rows, labels, probabilities, self.task, self.threshold, self.subgroups,
                                       self.settings))
        entry = flat_intervals(self.intervals[name]) | self._calibrate(name, labels, probabilities)
        if self.task.type == "binary":
            roc, pr = roc_points(labels[:, 0], probabilities[:, 1]), pr_points(labels[:, 0], probabilities[:, 1])
            write_csv(roc, self.out_dir / f"roc_{name}.csv")
            write_csv(pr, self.out_dir / f"pr_{name}.csv")
            self.curves[name] = (roc, pr)
        return entry

    def _calibrate(self, name: str, labels: np.ndarray, probabilities: np.ndarray) -> dict:
        """Record one set's calibration before (and after) temperature scaling; return its metrics.json entries."""
        calibration = {"before": calibration_summary(self.task, labels, probabilities, CALIBRATION_BINS)}
        reliability = {"before": reliability_bins(*calibration_pairs(self.task, labels, probabilities), CALIBRATION_BINS)}
        if self.temperature is not None:
            scaled = self.temperature.apply(probabilities)
            calibration["after_temperature_scaling"] = calibration_summary(self.task, labels, scaled, CALIBRATION_BINS)
            reliability["after"] = reliability_bins(*calibration_pairs(self.task, labels, scaled), CALIBRATION_BINS)
        self.calibration[name], self.reliability[name] = calibration, reliability
        write_csv(reliability["before"].dropna(), self.out_dir / f"calibration_{name}.csv")
        entry = {"ece": calibration["before"]["ece"]}
        if self.task.type != "binary":  # binary tasks have the Brier score among their interval metrics
            entry["brier"] = calibration["before"]["brier"]
        if "after_temperature_scaling" in calibration:
            after = calibration["after_temperature_scaling"]
            entry |= {"brier_after_temperature": after["brier"], "ece_after_temperature": after["ece"]}
        return entry

    def external_gap(self) -> dict | None:
        """Return internal minus external test metrics with intervals, or None without both sets."""
        if not {"internal_test", "external_test"} <= set(self.intervals):
            return None
        gap = difference_interval(self.samples["internal_test"], self.samples["external_test"], self.intervals["internal_test"],
                                  self.intervals["external_test"], self.settings)
        log.info("external gap (internal - external): AUC %s [%s, %s]", gap["auc"]["value"], gap["auc"]["ci_low"],
                 gap["auc"]["ci_high"])
        return gap

    def write(self) -> None:
        """Write metrics_by_group.csv, bootstrap.json, calibration.json and the reliability (plus binary ROC and PR) PNGs."""
        if not self.intervals:
            return
        write_csv(pd.concat(self.groups, ignore_index=True), self.out_dir / "metrics_by_group.csv")
        write_json_atomic(self.out_dir / "bootstrap.json", {
            "unit": "patient", "resamples": self.settings.resamples, "seed": self.settings.seed,
            "confidence": self.settings.confidence, "min_per_class": self.settings.min_per_class, "sets": self.intervals})
        write_json_atomic(self.out_dir / "calibration.json", {
            "bins": CALIBRATION_BINS, "judged_on": CALIBRATION_JUDGED_ON[self.task.type],
            "temperature": self.temperature.temperature if self.temperature else None,
            "temperature_fitted_on": "val" if self.temperature else None, "sets": self.calibration})
        if self.curves:
            roc_figure({name: (roc, self.intervals[name]["auc"]["value"] or float("nan"))
                        for name, (roc, _) in self.curves.items()}, self.out_dir / "roc.png")
            curve_figure({name: (pr, f"AP {self.intervals[name]['pr_auc']['value']}") for name, (_, pr) in self.curves.items()},
                         "recall", "precision", ("sensitivity (recall)", "PPV (precision)"), "Precision-recall",
                         self.out_dir / "pr.png", diagonal=False)
        reliability = {}
        for name, tables in self.reliability.items():
            for when, table in tables.items():
                summary = self.calibration[name]["before" if when == "before" else "after_temperature_scaling"]
                reliability[f"{name} {when}" if len(tables) > 1 else name] = (table.dropna(), f"ECE {summary['ece']}")
        curve_figure(reliability, "mean_predicted", "observed", ("mean predicted probability", "observed positive rate"),
                     "Reliability (numbers: cases per bin)", self.out_dir / "calibration.png", counts="count")
