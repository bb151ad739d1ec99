"""The Flower ServerApp the coordinator runs: the study config and the work folder come in the run config."""

from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from crossmed.federated.coordinator import Coordinator
from crossmed.federated.messages import WORK_DIR_KEY, study_config
from crossmed.logs import configure_logging
from crossmed.reproducibility import in_effect

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the federation's remaining rounds (see crossmed.federated.coordinator)."""
    configure_logging("coordinator")
    cfg = study_config(context.run_config)
    in_effect(cfg)  # the portable CPU settings, when the environment asks for them (the initial network is built here)
    Coordinator(cfg, Path(str(context.run_config[WORK_DIR_KEY]))).run(grid)
