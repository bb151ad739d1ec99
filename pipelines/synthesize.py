"""Stage `synthesize`: write the built-in cohort to paths.raw; for MedMNIST, fetch a missing file when online."""

from crossmed.stage import run_stage


def synthesize(cfg) -> None:
    """Write every site's DICOM files, labels and demo keys when data.source is synthetic; otherwise a note."""
    from crossmed.data.sources.acquire import acquire_source  # here, not at the top: see crossmed.stage

    acquire_source(cfg)


if __name__ == "__main__":
    run_stage(synthesize, __file__, "synthesize")
