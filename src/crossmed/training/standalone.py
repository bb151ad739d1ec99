"""Run the train stage from a saved, fully composed config file: `python -m crossmed.training.standalone CONFIG.yaml`.

Used to train outside DVC (benchmarks, tests that kill and resume a run); paths come from the config.
"""

import sys

from omegaconf import OmegaConf

from crossmed.logs import configure_logging
from crossmed.reproducibility import enter_stage
from crossmed.training.distributed import launch, needs_launch
from crossmed.training.study import train_study


def main(argv: list[str] | None = None) -> None:
    """Train with the config in argv[0], writing the checkpoint, history and run reference under its paths."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.exit("usage: python -m crossmed.training.standalone CONFIG.yaml")
    cfg = OmegaConf.load(args[0])
    configure_logging("train")
    enter_stage(cfg)  # reproducibility.cpu=portable: restart once with the portable environment
    if needs_launch(cfg.train):  # train.strategy=ddp: run again as torchrun's processes
        sys.exit(launch(cfg.train, ["-m", "crossmed.training.standalone", args[0]]))
    exp = cfg.paths.experiments
    train_study(cfg, f"{cfg.paths.models}/checkpoint.pt", f"{exp}/train/history.csv", f"{exp}/train/mlflow_run.json")


if __name__ == "__main__":
    main()


def train_in_subprocess(config: str, kill_at: str | None = None) -> tuple[int, str]:
    """Run main() on `config` in a new Python process; SIGKILL it when `kill_at` appears in its log. Return (exit code, log)."""
    import os
    import signal
    import subprocess

    process = subprocess.Popen([sys.executable, "-m", "crossmed.training.standalone", str(config)], stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log = []
    for line in process.stderr:
        log.append(line)
        if kill_at and kill_at in line:
            process.send_signal(signal.SIGKILL)
            break
    process.stderr.close()
    return process.wait(), "".join(log)
