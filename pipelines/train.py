"""Stage `train`: the configured MONAI network on the processed data, one MLflow run per training."""

import sys

from crossmed.stage import run_stage


def train(cfg) -> None:
    """Write paths.checkpoint, paths.history and paths.training_run."""
    from crossmed.stages import train as stage  # here, not at the top: see crossmed.stage
    from crossmed.training.distributed import launch, needs_launch

    if needs_launch(cfg.train):  # train.strategy=ddp: run this stage again as torchrun's processes
        sys.exit(launch(cfg.train, [__file__, *sys.argv[1:]]))
    stage.run(cfg)


if __name__ == "__main__":
    run_stage(train, __file__, "train", computes="device")
