"""Stage `report`: the validation report (Markdown and self-contained HTML) from what evaluate measured."""

from crossmed.stage import run_stage


def report(cfg) -> None:
    """Write experiments/reports/validation_report.md and .html."""
    from crossmed.evaluation.report_stage import report_study  # here, not at the top: see crossmed.stage

    report_study(cfg, f"{cfg.paths.models}/checkpoint.pt", f"{cfg.paths.experiments}/train/mlflow_run.json", f"{cfg.paths.experiments}/reports")


if __name__ == "__main__":
    run_stage(report, __file__, "report")
