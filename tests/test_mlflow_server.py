"""The train stage logs to a real `mlflow server` on 127.0.0.1 when MLFLOW_TRACKING_URI points at it."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

from conftest import REPO
from crossmed.ports import free_port


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    server = subprocess.Popen(
        [str(mlflow_cli), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(tmp_path / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
        if server.poll() is not None:
            pytest.fail(f"mlflow server exited: {server.stderr.read().decode()[-2000:]}")
    else:
        server.kill()
        pytest.fail("mlflow server did not answer /health within 90 s")
    yield uri
    os.killpg(server.pid, 15)
    server.wait(timeout=30)


@pytest.mark.slow
def test_train_stage_logs_to_mlflow_server(tiny_study, mlflow_server, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server}
    result = subprocess.run(
        [sys.executable, str(REPO / "pipelines" / "train.py"), "experiment=smoke", "train.max_epochs=1",
         f"paths.processed={tiny_study.paths.processed}", f"paths.models={tmp_path / 'models'}",
         f"paths.experiments={tmp_path / 'experiments'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    reference = json.loads((tmp_path / "experiments" / "train" / "mlflow_run.json").read_text())
    assert reference["tracking_uri"] == mlflow_server
    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(reference["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.max_epochs"] == "1" and "epoch/val_auc" in run.data.metrics
    assert [a.path for a in client.list_artifacts(run.info.run_id, "training")] == ["training/history.csv"]
    assert "epoch 1/1 done" in result.stderr and "img/s" in result.stderr
