"""The Flower ServerApp the coordinator runs: the study config and the work folder come in the run config."""

import logging
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from crossmed.federated.coordinator import LOG_FILE, Coordinator
from crossmed.federated.messages import WORK_DIR_KEY, study_config
from crossmed.logs import configure_logging
from crossmed.reproducibility import in_effect

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the federation's remaining rounds (see crossmed.federated.coordinator)."""
    configure_logging("coordinator")
    work = Path(str(context.run_config[WORK_DIR_KEY]))
    work.mkdir(parents=True, exist_ok=True)
    log_file = logging.FileHandler(work / LOG_FILE, encoding="utf-8")  # besides `flwr log <run id>`: a file next to its state
    log_file.setFormatter(logging.Formatter("%(asctime)s [%(name)s] %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logging.getLogger("crossmed").addHandler(log_file)
    try:
        cfg = study_config(context.run_config)
        in_effect(cfg)  # the portable CPU settings, when the environment asks for them (the initial network is built here)
        Coordinator(cfg, work, context).run(grid)
    except Exception:
        logging.getLogger("crossmed.coordinator").exception("the coordinator stopped")
        raise
    finally:
        logging.getLogger("crossmed").removeHandler(log_file)
        log_file.close()
