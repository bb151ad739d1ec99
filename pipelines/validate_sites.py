"""Stage `validate_sites`: the exported model on each site's own test rows, as site reports of aggregates only."""

from crossmed.stage import run_stage


def validate_sites(cfg) -> None:
    """Write paths.site_reports/<SITE>/."""
    from crossmed.stages import validate_sites as stage  # here, not at the top: see crossmed.stage

    stage.run(cfg)


if __name__ == "__main__":
    run_stage(validate_sites, __file__, "validate_sites", computes="cpu")
