"""Stage `preprocess`: common grid and intensity, leak-free splits (official or patient-level), data card."""

from crossmed.stage import run_stage


def preprocess(cfg) -> None:
    """Write paths.processed from paths.deidentified (or the MedMNIST file in data.path)."""
    from crossmed.data.preprocess import preprocess_study  # here, not at the top: see crossmed.stage

    preprocess_study(cfg, cfg.paths.deidentified, cfg.paths.processed)


if __name__ == "__main__":
    run_stage(preprocess, __file__, "preprocess", computes="cpu")
