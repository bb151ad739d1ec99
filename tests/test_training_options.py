"""Training options from conf/train: schedules with warm-up, class weighting, gradient clipping."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import tiny_config
from crossmed.data.task import Task
from crossmed.errors import ConfigError
from crossmed.training.objectives import balanced_weights
from crossmed.training.schedules import make_scheduler


def _rates(name: str, epochs: int, steps: int, warmup: int) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler, per_batch = make_scheduler(optimizer, name, epochs, steps, warmup, 1.0)
    rates = []
    for _ in range(epochs):
        for _ in range(steps):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if per_batch:
                scheduler.step()
        if not per_batch:
            scheduler.step()
    return rates


def test_warmup_then_cosine_and_one_cycle():
    rates = _rates("cosine", 6, 1, 2)
    assert rates[0] < rates[1] < rates[2] == pytest.approx(1.0) and rates[2] > rates[3] > rates[5]
    cycle = _rates("onecycle", 4, 5, 0)
    peak = int(np.argmax(cycle))
    assert 0 < peak < len(cycle) - 1 and cycle[0] < cycle[peak] and cycle[-1] < cycle[0]
    assert _rates("constant", 3, 2, 0) == [1.0] * 6
    with pytest.raises(ConfigError, match="train.schedule"):
        _rates("step", 3, 1, 0)
    with pytest.raises(ConfigError, match="train.warmup_epochs"):
        _rates("cosine", 3, 1, 3)


def test_balanced_weights():
    task = Task("multiclass", ("a", "b", "c"), 1, 2)
    assert balanced_weights(np.array([[0], [0], [0], [1]]), task) == [4 / 9, 4 / 3, 0.0]
    labels = Task("multilabel", ("x", "y"), 1, 2)
    assert balanced_weights(np.array([[1, 0], [0, 0], [0, 1], [0, 1]]), labels) == [3.0, 1.0]


def test_training_with_every_option(tmp_path, tiny_study, caplog):
    from crossmed.training.study import train_study

    cfg = tiny_config(tmp_path, "train.max_epochs=3", "train.schedule=onecycle", "train.warmup_epochs=1",
                      "train.grad_clip_norm=0.5", "train.class_weighting=balanced")
    cfg.paths.processed = tiny_study.paths.processed
    exp = Path(cfg.paths.experiments)
    with caplog.at_level("INFO", logger="crossmed"):
        train_study(cfg, f"{cfg.paths.models}/checkpoint.pt", exp / "train/history.csv", exp / "train/mlflow_run.json")
    assert "class weights (balanced" in caplog.text
    history = pd.read_csv(exp / "train" / "history.csv")
    assert len(history) == 3 and history["learning_rate"].iloc[0] < history["learning_rate"].max()
