"""Kill the train stage during epoch k, rerun it, and report whether the final metrics equal an uninterrupted run; print JSON.

Uses the processed data of the current checkout (run `dvc repro` first) and the composed default config
with --epochs; both runs write under a temporary folder. Run: `.venv/bin/python benchmarks/train_resume.py`.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parent.parent
COMPARED = ["epoch", "train_loss", "val_loss", "val_auc", "learning_rate"]


def _config(root: Path, epochs: int) -> Path:
    from crossmed.params_file import compose_params
    from crossmed.study_paths import folder_overrides

    cfg = OmegaConf.create(compose_params(REPO / "conf", overrides=[f"train.max_epochs={epochs}", "train.log_every_steps=1",
                                                                    *folder_overrides(root, ("models", "experiments"))]))
    cfg.paths.processed = str(REPO / "data" / "processed")
    cfg.mlflow.tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    OmegaConf.save(cfg, root / "config.yaml")
    return root / "config.yaml"


def _train(config: Path, kill_at: str | None = None) -> tuple[float, str]:
    sys.path.insert(0, str(REPO / "tests"))  # the tests' helper that runs the train stage in its own process
    from processes import train_in_subprocess

    started = time.perf_counter()
    code, log = train_in_subprocess(str(config), kill_at)
    if not kill_at and code != 0:
        sys.exit(log[-3000:])
    return time.perf_counter() - started, log


def main() -> None:
    """Run both trainings and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--kill-epoch", type=int, default=4, help="the epoch during which the run is killed")
    args = parser.parse_args()
    if not (REPO / "data" / "processed" / "manifest.csv").is_file():
        sys.exit("data/processed is missing: run `dvc repro` first")
    with tempfile.TemporaryDirectory(prefix="crossmed-resume-") as tmp:
        whole, killed = Path(tmp) / "whole", Path(tmp) / "killed"
        whole.mkdir(), killed.mkdir()
        whole_seconds, _ = _train(_config(whole, args.epochs))
        kill_seconds, log = _train(_config(killed, args.epochs), kill_at=f"epoch {args.kill_epoch}/{args.epochs} step 2/")
        resume_seconds, resumed_log = _train(killed / "config.yaml")
        a = pd.read_csv(whole / "experiments/train/history.csv")[COMPARED]
        b = pd.read_csv(killed / "experiments/train/history.csv")[COMPARED]
        wa = torch.load(whole / "models/checkpoint.pt", weights_only=True)["state_dict"]
        wb = torch.load(killed / "models/checkpoint.pt", weights_only=True)["state_dict"]
        print(json.dumps({
            "epochs": args.epochs, "killed_during_epoch": args.kill_epoch if f"epoch {args.kill_epoch - 1}/" in log
            and f"epoch {args.kill_epoch}/{args.epochs} done" not in log else None,
            "resumed_after_epoch": args.kill_epoch - 1 if f"after epoch {args.kill_epoch - 1}" in resumed_log else None,
            "history_identical": bool(a.equals(b)), "best_weights_identical": all(torch.equal(wa[k], wb[k]) for k in wa),
            "final_val_auc": {"uninterrupted": float(a["val_auc"].max()), "resumed": float(b["val_auc"].max())},
            "seconds": {"uninterrupted": round(whole_seconds, 1), "until_kill": round(kill_seconds, 1),
                        "resumed_rest": round(resume_seconds, 1)},
        }, indent=2))


if __name__ == "__main__":
    main()
