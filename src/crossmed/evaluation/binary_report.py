"""What the evaluate stage reports for a binary task, set by set: intervals, subgroups, the external gap, ROC, PR, calibration."""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from crossmed.evaluation.bootstrap import BootstrapSettings, binary_intervals, difference_interval
from crossmed.evaluation.calibration import TemperatureScaling, calibration_summary, reliability_bins
from crossmed.evaluation.groups import group_table
from crossmed.evaluation.plots import curve_figure, pr_points, roc_figure, roc_points, write_csv
from crossmed.files import write_json_atomic

log = logging.getLogger("crossmed.evaluate")
CALIBRATION_BINS = 10


def flat_intervals(intervals: dict[str, dict]) -> dict:
    """Return {metric: value, metric_ci_low: .., metric_ci_high: ..} for metrics.json (None where undefined)."""
    return {f"{name}{suffix}": result[key] for name, result in intervals.items()
            for suffix, key in (("", "value"), ("_ci_low", "ci_low"), ("_ci_high", "ci_high"))}


@dataclass
class BinaryReport:
    """Collects each evaluation set's binary results, then writes the tables and figures under `out_dir`."""

    out_dir: Path
    threshold: float
    settings: BootstrapSettings
    subgroups: list[str]
    temperature: TemperatureScaling | None = None
    rng: np.random.Generator = field(init=False)
    intervals: dict = field(default_factory=dict)
    samples: dict = field(default_factory=dict)
    groups: list = field(default_factory=list)
    curves: dict = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)

    def __post_init__(self):
        self.rng = np.random.default_rng(self.settings.seed)

    def add(self, name: str, rows: pd.DataFrame, labels: np.ndarray, probabilities: np.ndarray) -> dict:
        """Evaluate one set (labels (N,), probabilities (N, 2)); return its metrics.json entry."""
        scores = probabilities[:, 1]
        self.intervals[name], self.samples[name] = binary_intervals(labels, scores, self.threshold,
                                                                    rows["patient_id"].to_numpy(), self.settings, self.rng)
        self.groups.append(group_table(name, rows, labels, scores, self.threshold, self.subgroups, self.settings, self.rng))
        calibration = {"before": calibration_summary(labels, scores, CALIBRATION_BINS)}
        reliability = {"before": reliability_bins(labels, scores, CALIBRATION_BINS)}
        if self.temperature is not None:
            scaled = self.temperature.apply(probabilities)[:, 1]
            calibration["after_temperature_scaling"] = calibration_summary(labels, scaled, CALIBRATION_BINS)
            reliability["after"] = reliability_bins(labels, scaled, CALIBRATION_BINS)
        self.calibration[name] = calibration
        roc, pr = roc_points(labels, scores), pr_points(labels, scores)
        for kind, table in (("roc", roc), ("pr", pr), ("calibration", reliability["before"].dropna())):
            write_csv(table, self.out_dir / f"{kind}_{name}.csv")
        self.curves[name] = (roc, pr, reliability)
        entry = flat_intervals(self.intervals[name]) | {"ece": calibration["before"]["ece"]}
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
        """Write metrics_by_group.csv, bootstrap.json, calibration.json and the ROC, PR and reliability PNGs."""
        if not self.intervals:
            return
        write_csv(pd.concat(self.groups, ignore_index=True), self.out_dir / "metrics_by_group.csv")
        write_json_atomic(self.out_dir / "bootstrap.json", {
            "unit": "patient", "resamples": self.settings.resamples, "seed": self.settings.seed,
            "confidence": self.settings.confidence, "min_per_class": self.settings.min_per_class, "sets": self.intervals})
        write_json_atomic(self.out_dir / "calibration.json", {
            "bins": CALIBRATION_BINS, "temperature": self.temperature.temperature if self.temperature else None,
            "temperature_fitted_on": "val" if self.temperature else None, "sets": self.calibration})
        roc_figure({name: (roc, self.intervals[name]["auc"]["value"] or float("nan")) for name, (roc, _, _) in self.curves.items()},
                   self.out_dir / "roc.png")
        curve_figure({name: (pr, f"AP {self.intervals[name]['pr_auc']['value']}") for name, (_, pr, _) in self.curves.items()},
                     "recall", "precision", ("sensitivity (recall)", "PPV (precision)"), "Precision-recall",
                     self.out_dir / "pr.png", diagonal=False)
        reliability = {}
        for name, (_, _, tables) in self.curves.items():
            for when, table in tables.items():
                reliability[f"{name} {when}" if len(tables) > 1 else name] = (
                    table.dropna(), f"ECE {self.calibration[name]['before' if when == 'before' else 'after_temperature_scaling']['ece']}")
        curve_figure(reliability, "mean_predicted", "observed", ("mean predicted probability", "observed positive rate"),
                     "Reliability", self.out_dir / "calibration.png")
