"""Stage `synthesize`: write the built-in cohort to paths.raw; for MedMNIST, fetch a missing file when online."""

from crossmed.stage import run_stage


def synthesize(cfg) -> None:
    """Write paths.raw: the built-in cohort for data.source=synthetic, otherwise a note."""
    from crossmed.stages import synthesize as stage  # here, not at the top: see crossmed.stage

    stage.run(cfg)


if __name__ == "__main__":
    run_stage(synthesize, __file__, "synthesize")
