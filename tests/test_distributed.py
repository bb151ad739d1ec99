"""DDP with torchrun: each rank's share of a global batch, and two gloo processes training the tiny study on CPU."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from conftest import tiny_config
from crossmed.errors import ConfigError
from crossmed.training.distributed import Ranks, shard
from crossmed.training.loaders import ShardedBatchSampler
from processes import train_in_subprocess


@pytest.mark.parametrize("count,batch,world", [(19, 8, 2), (17, 8, 2), (33, 4, 3), (5, 64, 4), (64, 8, 2)])
def test_every_image_once_per_epoch_and_equal_steps(count, batch, world):
    samplers = [ShardedBatchSampler(count, batch, Ranks(rank, rank, world), seed=7) for rank in range(world)]
    orders = []
    for epoch in (1, 2):
        for sampler in samplers:
            sampler.set_epoch(epoch)
        batches = [list(sampler) for sampler in samplers]
        orders.append(batches[0])
        assert len({len(b) for b in batches}) == 1 and len(batches[0]) == len(samplers[0]), "same steps on every rank"
        assert all(len(step) > 0 for rank in batches for step in rank), "no rank gets an empty batch"
        seen = sorted(i for rank in batches for step in rank for i in step)
        assert seen == list(range(count))
    assert orders[0] != orders[1], "a new order each epoch"


def test_balanced_draw_and_too_many_processes():
    weights = np.where(np.arange(100) < 90, 1 / 90, 1 / 10)  # 90 of class 0, 10 of class 1: drawn equally often
    drawn = [i for step in ShardedBatchSampler(100, 10, Ranks(0, 0, 2), 1, weights) for i in step]
    assert 15 <= sum(i >= 90 for i in drawn) <= 35
    with pytest.raises(ConfigError, match="nproc_per_node"):
        ShardedBatchSampler(1, 4, Ranks(0, 0, 2), 1)


def test_contiguous_validation_shards():
    assert [shard(9, Ranks(r, r, 2)) for r in range(2)] == [(0, 4), (4, 9)]
    assert [shard(2, Ranks(r, r, 3)) for r in range(3)] == [(0, 0), (0, 1), (1, 2)]


@pytest.mark.slow
def test_two_gloo_processes_train_one_epoch(tmp_path, tiny_study):
    cfg = tiny_config(tmp_path, "train.strategy=ddp", "train.ddp.nproc_per_node=2", "train.max_epochs=1", "train.batch_size=4")
    cfg.paths.processed = tiny_study.paths.processed
    OmegaConf.save(cfg, tmp_path / "ddp.yaml")
    code, log = train_in_subprocess(str(tmp_path / "ddp.yaml"))
    assert code == 0, log[-3000:]
    assert "starting 2 processes with torchrun" in log and "process group: 2 processes, backend gloo" in log
    assert log.count("epoch 1/1 done") == 1, "only rank 0 reports progress"
    manifest = pd.read_csv(Path(tiny_study.paths.processed) / "manifest.csv")
    history = pd.read_csv(cfg.paths.history)
    assert history["train_images"].tolist() == [int((manifest["split"] == "train").sum())]
    assert Path(cfg.paths.checkpoint).is_file()
    run_id = json.loads(Path(cfg.paths.training_run).read_text())["run_id"]
    client = mlflow.MlflowClient(tracking_uri=cfg.mlflow.tracking_uri)
    runs = client.search_runs([client.get_run(run_id).info.experiment_id])
    assert len(runs) == 1 and runs[0].data.tags["device.processes"] == "2"


@pytest.mark.gpu
@pytest.mark.slow
def test_nccl_process_group_trains_on_cuda(tmp_path, tiny_study):
    cfg = tiny_config(tmp_path, "device=cuda", "train.strategy=ddp", "train.ddp.nproc_per_node=1", "train.max_epochs=1",
                      "train.batch_size=4")
    cfg.paths.processed = tiny_study.paths.processed
    OmegaConf.save(cfg, tmp_path / "ddp.yaml")
    code, log = train_in_subprocess(str(tmp_path / "ddp.yaml"))
    assert code == 0, log[-3000:]
    assert "process group: 1 processes, backend nccl, rank 0 on cuda:0" in log
    assert Path(cfg.paths.checkpoint).is_file()
