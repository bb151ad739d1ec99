"""Stage `evaluate`: internal and external test metrics at the operating point chosen on validation."""

from crossmed.stage import run_stage


def evaluate(cfg) -> None:
    """Write experiments/metrics.json and experiments/evaluation/."""
    from crossmed.evaluation.study import evaluate_study  # here, not at the top: see crossmed.stage

    evaluate_study(cfg, f"{cfg.paths.models}/checkpoint.pt", f"{cfg.paths.experiments}/train/mlflow_run.json",
                   f"{cfg.paths.experiments}/metrics.json", f"{cfg.paths.experiments}/evaluation")


if __name__ == "__main__":
    run_stage(evaluate, __file__, "evaluate", computes="device")
