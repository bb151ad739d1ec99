"""Run one stage from a saved, fully composed config: `python -m crossmed.stages STAGE CONFIG.yaml`.

The way into a stage outside DVC and Hydra (tests and benchmarks that run training in its own process, kill and
resume it, or time it): paths come from the config's paths.*, as under `dvc repro`.
"""

import importlib
import sys

from omegaconf import OmegaConf

from crossmed.logs import configure_logging
from crossmed.reproducibility import enter_stage

STAGES = ("synthesize", "deidentify", "preprocess", "train", "evaluate", "export", "validate_sites", "report")


def main(argv: list[str] | None = None) -> None:
    """Run the stage named in argv[0] on the config file in argv[1]."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in STAGES:
        sys.exit(f"usage: python -m crossmed.stages {{{','.join(STAGES)}}} CONFIG.yaml")
    name, config = args
    cfg = OmegaConf.load(config)
    configure_logging(name)
    enter_stage(cfg)  # reproducibility.cpu=portable: restart once with the portable environment
    if name == "train":
        from crossmed.training.distributed import launch, needs_launch

        if needs_launch(cfg.train):  # train.strategy=ddp: run again as torchrun's processes
            sys.exit(launch(cfg.train, ["-m", "crossmed.stages", name, config]))
    importlib.import_module(f"crossmed.stages.{name}").run(cfg)


if __name__ == "__main__":
    main()
