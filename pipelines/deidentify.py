"""Stage `deidentify`: DICOM PS3.15 Basic Profile and keyed pseudonyms for every site's images and table."""

from crossmed.deid.study import deidentify_study
from crossmed.stage import run_stage


def deidentify(cfg) -> None:
    """De-identify paths.raw into paths.deidentified, one folder per site."""
    deidentify_study(cfg.paths.raw, cfg.paths.deidentified, list(cfg.study.sites), cfg.deid)


if __name__ == "__main__":
    run_stage(deidentify, __file__, "deidentify")
