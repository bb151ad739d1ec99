"""Stage `report`: the validation report (Markdown and self-contained HTML) from what evaluate measured."""

from crossmed.stage import run_stage


def report(cfg) -> None:
    """Write paths.reports (the validation report, Markdown and HTML)."""
    from crossmed.stages import report as stage  # here, not at the top: see crossmed.stage

    stage.run(cfg)


if __name__ == "__main__":
    run_stage(report, __file__, "report")
