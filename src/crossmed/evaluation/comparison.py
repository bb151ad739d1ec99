"""Compare this model's test AUC with another run's on the same cases: paired DeLong test over matched image IDs."""

import logging
import tempfile
from pathlib import Path

import mlflow
import pandas as pd

from crossmed.errors import ConfigError, InputError
from crossmed.evaluation.delong import delong_test

log = logging.getLogger("crossmed.evaluate")


def reference_predictions(reference: str, set_name: str) -> tuple[pd.DataFrame, str]:
    """Return the other model's per-case predictions for `set_name` and where they came from.

    `reference` is an evaluation folder (holding predictions_<set>.csv) or an MLflow run ID in the current
    tracking store (its evaluation/predictions_<set>.csv artifact).
    """
    folder = Path(reference)
    if folder.is_dir():
        path = folder / f"predictions_{set_name}.csv"
        if not path.is_file():
            raise InputError(path, f"missing: the reference has no predictions for {set_name}")
        return pd.read_csv(path), str(path)
    try:
        with tempfile.TemporaryDirectory(prefix="crossmed-compare-") as tmp:
            local = mlflow.artifacts.download_artifacts(run_id=reference, artifact_path=f"evaluation/predictions_{set_name}.csv",
                                                        dst_path=tmp)
            return pd.read_csv(local), f"MLflow run {reference}"
    except Exception as err:  # MLflow raises its own errors for unknown runs and missing artifacts
        raise ConfigError("evaluate.compare_with", f"'{reference}' is neither an evaluation folder nor an MLflow run "
                                                   f"with evaluation/predictions_{set_name}.csv ({err})") from err


def compare_with_reference(ours: pd.DataFrame, theirs: pd.DataFrame, source: str, set_name: str) -> dict:
    """Return DeLong's paired test of our AUC minus theirs on the images both predicted; refuse mismatched cases."""
    for column in ("image_id", "actual", "probability"):
        if column not in theirs:
            raise InputError(source, f"no '{column}' column: DeLong's test compares binary predictions per image")
    matched = ours.merge(theirs[["image_id", "actual", "probability"]], on="image_id", suffixes=("", "_reference"))
    missing = len(ours) - len(matched)
    if missing:
        raise InputError(source, f"{missing} of {len(ours)} {set_name} images have no reference prediction: "
                                 "the comparison needs the same test set")
    if (matched["actual"] != matched["actual_reference"]).any():
        raise InputError(source, f"labels differ for {int((matched['actual'] != matched['actual_reference']).sum())} images")
    result = delong_test(matched["actual"], matched["probability"], matched["probability_reference"])
    log.info("%s: AUC %.4f vs %.4f (%s), difference %.4f [%.4f, %.4f], DeLong p = %.4g", set_name, result["auc_a"],
             result["auc_b"], source, result["difference"], result["ci_low"], result["ci_high"], result["p_value"])
    return {**result, "compared_with": source, "cases": int(len(matched))}
