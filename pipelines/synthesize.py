"""Stage `synthesize`: write the built-in two-site DICOM cohort to paths.raw (a note only for other data sources)."""

from crossmed.stage import run_stage
from crossmed.synthetic.cohort import CohortSpec, write_cohort, write_not_synthesized


def synthesize(cfg) -> None:
    """Write every site's DICOM files, labels and demo keys, when data.source is synthetic."""
    if cfg.data.source == "synthetic":
        write_cohort(CohortSpec.from_config(cfg.data.synthetic), cfg.paths.raw)
    else:
        write_not_synthesized(cfg.paths.raw, cfg.data.source)


if __name__ == "__main__":
    run_stage(synthesize, __file__, "synthesize")
