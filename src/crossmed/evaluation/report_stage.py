"""The report stage as a library call: the validation report from the evaluate stage's files, logged to the run."""

import logging
from pathlib import Path

import mlflow
from omegaconf import DictConfig

from crossmed.data.processed import DATA_CARD_FILE, data_fingerprint
from crossmed.evaluation.report import write_report
from crossmed.tracking import file_digests, resume_run

log = logging.getLogger("crossmed.report")


def report_study(cfg: DictConfig, checkpoint_path: str | Path, run_reference: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
    """Write experiments/reports/validation_report.{md,html} and attach both to the training run."""
    experiments = Path(cfg.paths.experiments)
    # The report names the model and data by content, not by run ID or time: the same inputs give the same file.
    provenance = {"checkpoint_sha256": file_digests(checkpoint_path)["sha256"], "data_sha256": data_fingerprint(cfg.paths.processed)}
    with resume_run(run_reference, checkpoint_path, cfg.mlflow.tracking_uri):
        paths = write_report(cfg, experiments / "evaluation", experiments / "evaluation" / "metrics_all.json",
                             experiments / "train" / "history.csv", Path(cfg.paths.processed) / DATA_CARD_FILE, Path(out_dir),
                             provenance)
        for path in paths:
            mlflow.log_artifact(str(path), artifact_path="reports")
    log.info("wrote %s and %s", *paths)
    return paths
