"""Stage `deidentify`: DICOM PS3.15 Basic Profile and keyed pseudonyms for the images and tables data.source brings."""

from crossmed.stage import run_stage


def deidentify(cfg) -> None:
    """De-identify data.input into paths.deidentified."""
    from crossmed.stages import deidentify as stage  # here, not at the top: see crossmed.stage

    stage.run(cfg)


if __name__ == "__main__":
    run_stage(deidentify, __file__, "deidentify")
