"""Training options from conf/train: schedules with warm-up, class weighting, gradient clipping."""

import json
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
    from crossmed.stages import train as train_stage

    cfg = tiny_config(tmp_path, "train.max_epochs=3", "train.schedule=onecycle", "train.warmup_epochs=1",
                      "train.grad_clip_norm=0.5", "train.class_weighting=balanced")
    cfg.paths.processed = tiny_study.paths.processed
    with caplog.at_level("INFO", logger="crossmed"):
        train_stage.run(cfg)
    assert "class weights (balanced" in caplog.text
    history = pd.read_csv(Path(cfg.paths.history))
    assert len(history) == 3 and history["learning_rate"].iloc[0] < history["learning_rate"].max()


def test_vit_sgd_balanced_sampler_and_configured_augmentation(tmp_path, tiny_study, caplog, monkeypatch):
    import mlflow

    from crossmed.stages import evaluate as evaluate_stage
    from crossmed.stages import export as export_stage
    from crossmed.stages import train as train_stage

    monkeypatch.setenv("DVC_EXP_NAME", "vit-sgd")  # what `dvc exp run` sets: the MLflow run takes the same name
    noise = "{_target_:monai.transforms.RandGaussianNoised,keys:image,prob:1.0,std:0.1}"
    cfg = tiny_config(tmp_path, "model=vit_tiny", "train.max_epochs=2", "train.optimizer=sgd", "train.learning_rate=0.01",
                      "train.sampler=balanced", f"train.augment=[{noise}]")
    cfg.paths.processed = tiny_study.paths.processed
    checkpoint = cfg.paths.checkpoint
    with caplog.at_level("INFO", logger="crossmed"):
        train_stage.run(cfg)
        evaluate_stage.run(cfg)
        export_stage.run(cfg)  # the ViT traces and matches
    assert "balanced sampler" in caplog.text and "model.net.img_size: [64, 64] -> [32, 32]" in caplog.text
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["model"]["net"]["_target_"] == "crossmed.model.networks.ViTClassifier"
    run = mlflow.MlflowClient(cfg.mlflow.tracking_uri).get_run(json.loads(Path(cfg.paths.training_run).read_text())["run_id"])
    assert run.info.run_name == "vit-sgd" and run.data.tags["dvc.experiment"] == "vit-sgd"
    assert run.data.params["train.optimizer"] == "sgd" and run.data.params["seed"] == str(cfg.seed)
    assert run.data.params["train.deterministic"] == "True" and run.data.tags["version.torch"] == torch.__version__


@pytest.mark.parametrize("override,key", [("train.optimizer=lamb", "train.optimizer"), ("train.sampler=stratified", "train.sampler"),
                                          ("train.augment=[{_target_:monai.transforms.NoSuchd}]", r"train.augment\[0\]"),
                                          ("train.augment=[{_target_:monai.transforms.RandFlip}]", r"train.augment\[0\]"),
                                          ("train.strategy=fsdp", "train.strategy")])
def test_bad_training_options_name_the_key(tmp_path, tiny_study, override, key):
    from crossmed.stages import train as train_stage

    cfg = tiny_config(tmp_path, "train.max_epochs=1", override)
    cfg.paths.processed = tiny_study.paths.processed
    with pytest.raises(ConfigError, match=key):
        train_stage.run(cfg)
    assert not (Path(cfg.paths.history)).exists()


@pytest.mark.gpu
def test_amp_training_on_cuda(tmp_path, tiny_study):
    from crossmed.stages import train as train_stage

    cfg = tiny_config(tmp_path, "train.max_epochs=2", "device=cuda", "train.amp=true", "train.deterministic=false",
                      "train.grad_clip_norm=1.0")
    cfg.paths.processed = tiny_study.paths.processed
    best = train_stage.run(cfg)
    history = pd.read_csv(Path(cfg.paths.history))
    assert np.isfinite(history[["train_loss", "val_loss"]].to_numpy()).all() and 0.0 <= best["val_auc"] <= 1.0
    weights = torch.load(cfg.paths.checkpoint, weights_only=True)["state_dict"]
    assert all(v.dtype != torch.float16 for v in weights.values()), "autocast keeps the stored weights in float32"


@pytest.mark.gpu
def test_deterministic_cuda_training_repeats(tmp_path, tiny_study):
    from crossmed.stages import train as train_stage

    histories = []
    for name in ("first", "second"):
        cfg = tiny_config(tmp_path / name, "train.max_epochs=2", "device=cuda", "train.deterministic=true")
        cfg.paths.processed = tiny_study.paths.processed
        train_stage.run(cfg)
        histories.append(pd.read_csv(Path(cfg.paths.history))[["train_loss", "val_loss", "val_auc"]])
    pd.testing.assert_frame_equal(*histories, check_exact=True)


def test_compiled_training_saves_the_plain_network(tmp_path, tiny_study):
    from crossmed.stages import train as train_stage

    histories = []
    for name, compiled in (("plain", "false"), ("compiled", "true")):
        cfg = tiny_config(tmp_path / name, "train.max_epochs=2", f"train.compile={compiled}", "train.compile_backend=eager")
        cfg.paths.processed = tiny_study.paths.processed
        train_stage.run(cfg)
        histories.append(pd.read_csv(Path(cfg.paths.history))[["train_loss", "val_loss", "val_auc"]])
        weights = torch.load(cfg.paths.checkpoint, weights_only=True)["state_dict"]
        assert not any(key.startswith(("_orig_mod.", "module.")) for key in weights), "saved as the network, not its wrapper"
    pd.testing.assert_frame_equal(*histories, rtol=1e-4)
