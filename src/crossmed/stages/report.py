"""Stage `report`: the validation report from the evaluate stage's files, logged to the training run.

Reads paths.checkpoint, paths.processed, paths.evaluation, paths.all_metrics, paths.history, paths.training_run and
the site reports in paths.site_reports and paths.received_site_reports; writes paths.reports (validation_report.md and .html).
"""

import logging
from pathlib import Path

import mlflow
from omegaconf import DictConfig

from crossmed.data.processed import DATA_CARD_FILE, data_fingerprint
from crossmed.reporting.multi_site import collect_site_reports
from crossmed.reporting.validation_report import write_report
from crossmed.tracking import file_digests, resume_run

log = logging.getLogger("crossmed.report")


def run(cfg: DictConfig) -> tuple[Path, Path]:
    """Write paths.reports/validation_report.{md,html} and attach both to the training run; return both paths."""
    checkpoint_path = Path(cfg.paths.checkpoint)
    # The report names the model and data by content, not by run ID or time: the same inputs give the same file.
    provenance = {"checkpoint_sha256": file_digests(checkpoint_path)["sha256"], "data_sha256": data_fingerprint(cfg.paths.processed)}
    sites = collect_site_reports(*[Path(p) for p in (cfg.paths.get("site_reports"), cfg.paths.get("received_site_reports"))
                                   if p and Path(p).is_dir()])
    log.info("site reports: %s", ", ".join(f"{r['site']} ({p})" for p, r in sites) or "none")
    with resume_run(cfg.paths.training_run, checkpoint_path, cfg.mlflow.tracking_uri):
        paths = write_report(cfg, Path(cfg.paths.evaluation), Path(cfg.paths.all_metrics), Path(cfg.paths.history),
                             Path(cfg.paths.processed) / DATA_CARD_FILE, Path(cfg.paths.reports), provenance, sites)
        for path in paths:
            mlflow.log_artifact(str(path), artifact_path="reports")
    log.info("wrote %s and %s", *paths)
    return paths
