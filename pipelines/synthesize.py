"""Stage `synthesize`: write the built-in two-site DICOM cohort to paths.raw."""

from crossmed.stage import run_stage
from crossmed.synthetic.cohort import CohortSpec, write_cohort


def synthesize(cfg) -> None:
    """Write every site's DICOM files, labels and demo keys."""
    write_cohort(CohortSpec.from_config(cfg.data.synthetic), cfg.paths.raw)


if __name__ == "__main__":
    run_stage(synthesize, __file__, "synthesize")
