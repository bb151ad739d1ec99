"""Stage `preprocess`: common grid and intensity, leak-free splits (official or patient-level), data card."""

from crossmed.stage import run_stage


def preprocess(cfg) -> None:
    """Write paths.processed from paths.deidentified (or the MedMNIST file in data.path)."""
    from crossmed.stages import preprocess as stage  # here, not at the top: see crossmed.stage

    stage.run(cfg)


if __name__ == "__main__":
    run_stage(preprocess, __file__, "preprocess", computes="cpu")
