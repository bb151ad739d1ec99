"""Stage `train`: the configured MONAI network on the processed data, one MLflow run per training."""

import sys

from crossmed.stage import run_stage


def train(cfg) -> None:
    """Write models/checkpoint.pt, experiments/train/history.csv and experiments/train/mlflow_run.json."""
    from crossmed.training.distributed import launch, needs_launch  # here, not at the top: see crossmed.stage
    from crossmed.training.study import train_study

    if needs_launch(cfg.train):  # train.strategy=ddp: run this stage again as torchrun's processes
        sys.exit(launch(cfg.train, [__file__, *sys.argv[1:]]))
    train_study(cfg, f"{cfg.paths.models}/checkpoint.pt", f"{cfg.paths.experiments}/train/history.csv",
                f"{cfg.paths.experiments}/train/mlflow_run.json")


if __name__ == "__main__":
    run_stage(train, __file__, "train", computes="device")
