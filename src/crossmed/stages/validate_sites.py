"""Stage `validate_sites`: the exported model validated on each site's own test rows, as a site would do it.

Reads paths.export and paths.processed; writes paths.site_reports/<SITE>/site_report.{json,md} (aggregates only) for
each site in evaluate.site_validation.sites and logs them to the training run. A hospital runs the same code on its
own machine with `crossmed validate`; the report stage assembles both kinds.
"""

import logging
from pathlib import Path

import mlflow
from omegaconf import DictConfig

from crossmed.evaluation.bootstrap import BootstrapSettings
from crossmed.files import atomic_directory
from crossmed.evaluation.site_report import TooFewPatients
from crossmed.inference.site_validation import SiteValidation, validate_site
from crossmed.tracking import metric_names, resume_run

log = logging.getLogger("crossmed.validate")


def run(cfg: DictConfig) -> dict[str, dict]:
    """Write one site report per configured site under paths.site_reports; return site -> report."""
    settings = cfg.evaluate.site_validation
    b = cfg.evaluate.bootstrap  # the evaluate stage's settings: a site validated here matches its test-set intervals
    how = SiteValidation(BootstrapSettings(b.resamples, b.seed, b.confidence, b.min_per_class), str(settings.runtime),
                         int(settings.min_patients))
    out_dir, reports = Path(cfg.paths.site_reports), {}
    with atomic_directory(out_dir) as work:
        (work / ".keep").touch()  # the folder exists (and DVC tracks it) when no site is validated here
        for number, site in enumerate(settings.sites, 1):
            log.info("site %d of %d: %s", number, len(settings.sites), site)
            try:
                reports[site] = validate_site(cfg.paths.export, cfg.paths.processed, site, work / site, how)
            except TooFewPatients as err:  # a site too small to report on without describing single patients
                log.warning("no report for site %s: %s", site, err)
    with resume_run(cfg.paths.training_run, cfg.paths.checkpoint, cfg.mlflow.tracking_uri):
        for site, report in reports.items():
            for name, part in report["sets"].items():
                values = {metric: result["value"] for metric, result in part["metrics"].items()}
                mlflow.log_metrics(metric_names(f"site_{site}_{name}", values))
        if reports:
            mlflow.log_artifacts(str(out_dir), artifact_path="site_reports")
    log.info("wrote %d site report(s) under %s", len(reports), out_dir)
    return reports
