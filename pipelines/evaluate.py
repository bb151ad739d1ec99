"""Stage `evaluate`: internal and external test metrics at the operating point chosen on validation."""

from crossmed.stage import run_stage


def evaluate(cfg) -> None:
    """Write paths.metrics and paths.evaluation."""
    from crossmed.stages import evaluate as stage  # here, not at the top: see crossmed.stage

    stage.run(cfg)


if __name__ == "__main__":
    run_stage(evaluate, __file__, "evaluate", computes="device")
