"""Seeded training is repeatable and survives a kill: the rerun resumes from the last epoch's state and ends bitwise where an
uninterrupted run ends (so two processes with the same seed also train identically up to the kill)."""

from pathlib import Path

import pandas as pd
import torch
from omegaconf import OmegaConf

from conftest import tiny_config
from processes import train_in_subprocess

COMPARED = ["epoch", "train_loss", "val_loss", "val_auc", "learning_rate"]


def _config(tmp_path: Path, name: str, tiny_study, epochs: int = 3) -> Path:
    cfg = tiny_config(tmp_path / name, f"train.max_epochs={epochs}", "train.batch_size=8", "train.log_every_steps=1")
    cfg.paths.processed = tiny_study.paths.processed  # read only: both runs train on the same processed data
    path = tmp_path / f"{name}.yaml"
    OmegaConf.save(cfg, path)
    return path


def _train(config: Path, kill_at: str | None = None) -> str:
    """Run the train stage in a subprocess; with kill_at, SIGKILL it when that text appears in its log."""
    code, log = train_in_subprocess(str(config), kill_at)
    assert kill_at or code == 0, log[-3000:]
    return log


def test_killed_training_resumes_to_identical_results(tmp_path, tiny_study):
    whole, killed = _config(tmp_path, "whole", tiny_study), _config(tmp_path, "killed", tiny_study)
    _train(whole)
    log = _train(killed, kill_at="epoch 3/3 step 2/")  # mid-epoch, after epoch 2's state was saved
    assert "epoch 2/3 done" in log and "epoch 3/3 done" not in log
    assert (tmp_path / "killed" / "models" / "resume" / "train_state.pt").is_file()
    resumed = _train(killed)
    assert "resuming from" in resumed and "after epoch 2" in resumed and "epoch 1/3 done" not in resumed
    _same_results(tmp_path / "whole", tmp_path / "killed")
    assert not (tmp_path / "killed" / "models" / "resume" / "train_state.pt").exists(), "finished: no state left"


def _same_results(a: Path, b: Path) -> None:
    """Assert that two training folders hold the same history (exactly) and the same best weights (bitwise)."""
    history = [pd.read_csv(folder / "experiments" / "train" / "history.csv")[COMPARED] for folder in (a, b)]
    pd.testing.assert_frame_equal(*history, check_exact=True)
    wa, wb = (torch.load(folder / "models" / "checkpoint.pt", weights_only=True)["state_dict"] for folder in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_early_stopping_ends_training_with_a_summary(tmp_path, tiny_study, caplog):
    from crossmed.stages import train as train_stage

    cfg = tiny_config(tmp_path, "train.max_epochs=12", "train.early_stopping_patience=1", "train.learning_rate=0.5")
    cfg.paths.processed = tiny_study.paths.processed
    exp = Path(cfg.paths.experiments)
    with caplog.at_level("INFO", logger="crossmed"):
        best = train_stage.run(cfg)
    history = pd.read_csv(exp / "train" / "history.csv")
    assert len(history) < 12 and len(history) == best["epoch"] + 1
    assert "early stop after epoch" in caplog.text and "(early stop)" in caplog.text
