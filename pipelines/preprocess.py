"""Stage `preprocess`: common grid and intensity, patient-level split with external sites, data card."""

from crossmed.data.preprocess import preprocess_study
from crossmed.stage import run_stage


def preprocess(cfg) -> None:
    """Write paths.processed from paths.deidentified."""
    preprocess_study(cfg.paths.deidentified, cfg.paths.processed, list(cfg.study.sites), list(cfg.study.external_sites),
                     int(cfg.data.image_size), float(cfg.data.spacing_mm), float(cfg.data.split.val_fraction),
                     float(cfg.data.split.test_fraction), int(cfg.seed))


if __name__ == "__main__":
    run_stage(preprocess, __file__, "preprocess")
