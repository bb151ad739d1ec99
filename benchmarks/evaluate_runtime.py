"""Time the evaluate stage's statistics for 10,000 test cases with 1,000 patient-bootstrap resamples; print JSON.

Cases are simulated (3 images per patient, two sites, sex and age recorded) with scores that separate the
classes at an AUC near 0.85. What is timed is everything the stage computes after inference for one
test set: intervals for 10 metrics overall and per site, sex and age band, calibration before and after
temperature scaling, ROC/PR/reliability tables and figures. Inference time depends on the network and is
reported by the train benchmarks. Goal: under 30 s on this CPU.
Run: `.venv/bin/python benchmarks/evaluate_runtime.py [--cases 10000] [--resamples 1000]`.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def simulated_cases(cases: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Return manifest-like rows, 0/1 labels and (N, 2) probabilities for `cases` images of cases/3 patients."""
    rng = np.random.default_rng(seed)
    patient = np.arange(cases) // 3
    patients = patient.max() + 1
    labels = rng.random(patients)[patient] < 0.3
    logits = rng.normal(1.0 * (2 * labels - 1), 1.0)
    p1 = 1 / (1 + np.exp(-logits))
    rows = pd.DataFrame({"patient_id": [f"P{i:06d}" for i in patient],
                         "site": np.where(patient % 2 == 0, "KR", "EE"),
                         "sex": rng.choice(["F", "M"], patients)[patient],
                         "age": rng.integers(5, 95, patients)[patient]})
    return rows, labels.astype(int), np.column_stack([1 - p1, p1])


def main() -> None:
    """Run the evaluation statistics once and print the timing as JSON."""
    from crossmed.data.task import Task
    from crossmed.evaluation.bootstrap import BootstrapSettings
    from crossmed.evaluation.calibration import TemperatureScaling
    from crossmed.evaluation.set_report import SetReport

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    rows, labels, probabilities = simulated_cases(args.cases)
    val_rows, val_labels, val_probabilities = simulated_cases(2000, seed=1)
    with tempfile.TemporaryDirectory(prefix="crossmed-evaluate-") as tmp:
        started = time.perf_counter()
        task = Task("binary", ("negative", "positive"), channels=1, spatial_dims=2)
        report = SetReport(task, Path(tmp), 0.5, BootstrapSettings(resamples=args.resamples, seed=0), ["sex", "age"],
                           TemperatureScaling(val_probabilities, val_labels))
        metrics = report.add("internal_test", rows, labels[:, None], probabilities)
        computed = time.perf_counter() - started
        report.write()
        seconds = time.perf_counter() - started
        groups = pd.read_csv(Path(tmp) / "metrics_by_group.csv")
    print(json.dumps({"benchmark": "evaluate_runtime", "cases": args.cases, "patients": int(rows["patient_id"].nunique()),
                      "resamples": args.resamples, "groups_with_intervals": int(groups[["group", "subgroup"]].drop_duplicates().shape[0]) + 1,
                      "seconds_statistics": round(computed, 2), "seconds_total": round(seconds, 2), "goal_seconds": 30,
                      "auc": metrics["auc"], "auc_ci": [metrics["auc_ci_low"], metrics["auc_ci_high"]]}, indent=2))


if __name__ == "__main__":
    main()
