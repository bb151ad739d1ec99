"""Run a pipeline stage as a Hydra program with crossmed's conventions.

A stage composes `conf/config.yaml` (run alone: `python pipelines/train.py model=densenet121`)
or reads the composed `params.yaml` that DVC writes (`--config-dir . --config-name params`,
as dvc.yaml calls it). Either way Hydra writes no output folder of its own, crossmed's logging
is used, and a `CrossmedError` ends the stage with its message and exit code 2.

Stage scripts import their library inside the stage function, not at the top: with reproducibility.cpu=portable
the process restarts itself before computing, and PyTorch, MONAI and MLflow (about 8 s on two cores) would
otherwise be imported twice; `--help` stays quick too.
"""

import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from omegaconf import DictConfig

from crossmed.errors import CrossmedError
from crossmed.logs import configure_logging
from crossmed.reproducibility import enter_stage

REPO_CONF_DIR = "conf"
# Stages write only where dvc.yaml says; Hydra's own output folder and log file are turned off.
HYDRA_QUIET_OVERRIDES = {
    "hydra.run.dir": ".",
    "hydra.output_subdir": "null",
    "hydra/job_logging": "none",
    "hydra/hydra_logging": "none",
}


def _with_quiet_hydra(argv: list[str]) -> list[str]:
    """Return argv with Hydra's output-folder and logging overrides added unless already given."""
    given = {arg.split("=", 1)[0].lstrip("+~") for arg in argv[1:] if "=" in arg}
    extra = [f"{key}={value}" for key, value in HYDRA_QUIET_OVERRIDES.items() if key not in given]
    return [argv[0], *argv[1:], *extra]


def run_stage(stage: Callable[[DictConfig], object], pipeline_file: str, name: str, computes: str | None = None) -> None:
    """Run `stage(cfg)` under Hydra, composing conf/ next to the pipelines folder.

    `computes`: the stage's numbers come from PyTorch on "device" (the configured one) or always on the "cpu",
    so reproducibility.cpu=portable applies (see crossmed.reproducibility).
    """
    conf_dir = str(Path(pipeline_file).resolve().parent.parent / REPO_CONF_DIR)

    @hydra.main(version_base="1.3", config_path=conf_dir, config_name="config")
    def _main(cfg: DictConfig) -> None:
        log = configure_logging(name)
        try:
            if computes:
                enter_stage(cfg, on_cpu=computes == "cpu")  # may restart this process once with the portable environment
            stage(cfg)
        except CrossmedError as err:
            log.error("%s stage stopped: %s", name, err)
            sys.exit(2)

    sys.argv = _with_quiet_hydra(sys.argv)
    _main()
