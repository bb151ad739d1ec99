"""The report stage as a library call: the validation report from the evaluate stage's files, logged to the run."""

import logging
from pathlib import Path

import mlflow
from omegaconf import DictConfig

from crossmed.data.processed import DATA_CARD_FILE
from crossmed.evaluation.report import write_report
from crossmed.tracking import resume_run, run_provenance

log = logging.getLogger("crossmed.report")


def report_study(cfg: DictConfig, run_reference: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
    """Write experiments/reports/validation_report.{md,html} and attach both to the training run."""
    experiments = Path(cfg.paths.experiments)
    with resume_run(run_reference) as run:
        provenance = run_provenance(run.info.run_id)
        paths = write_report(cfg, experiments / "evaluation", experiments / "metrics.json",
                             experiments / "train" / "history.csv", Path(cfg.paths.processed) / DATA_CARD_FILE, Path(out_dir),
                             provenance)
        for path in paths:
            mlflow.log_artifact(str(path), artifact_path="reports")
    log.info("wrote %s and %s", *paths)
    return paths
