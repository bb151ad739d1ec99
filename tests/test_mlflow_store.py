"""A checkout's MLflow store keeps working after the folder is copied or moved: artifacts and registered models."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

from crossmed.mlflow_store import relocate
from crossmed.ports import free_port


def _get(url: str, deadline: float) -> bytes:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)


def test_a_copied_checkout_shows_its_artifacts_and_loads_its_model_after_the_original_is_gone(trained_study, tmp_path):
    root = Path(trained_study.paths.experiments).parent
    original, copy = tmp_path / "original", tmp_path / "copy"
    shutil.copytree(root, original)
    relocate(f"sqlite:///{original / 'experiments' / 'mlflow.db'}")  # the original as a checkout of its own
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    store = copy / "experiments" / "mlflow.db"
    client = mlflow.MlflowClient(f"sqlite:///{store}")
    checkpoint = hashlib.sha256((copy / "models" / "checkpoint.pt").read_bytes()).hexdigest()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string=f"tags.`checkpoint.sha256` = '{checkpoint}'")
    assert runs, "the training run is found by its checkpoint's hash"
    run_id = runs[0].info.run_id
    assert client.list_artifacts(run_id) == [], "control: the copy's store still points into the deleted original"

    port = free_port()
    ui = subprocess.Popen([sys.executable, "-m", "crossmed.cli", "ui", "--store", str(store), "--port", str(port)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        listed = json.loads(_get(f"{base}/ajax-api/2.0/mlflow/artifacts/list?run_id={run_id}", time.time() + 90))
        assert {"model", "evaluation", "training"} <= {f["path"] for f in listed["files"]}
        model_json = json.loads(_get(f"{base}/get-artifact?path=model/model.json&run_uuid={run_id}", time.time() + 10))
        assert model_json["classes"] == list(trained_study.study.classes)
        # What the UI lists: the study alone (no empty Default), opened on its runs table (a model-training experiment).
        experiments = json.loads(_get(f"{base}/ajax-api/2.0/mlflow/experiments/search?max_results=10", time.time() + 10))
        (experiment,) = experiments["experiments"]
        tags = {t["key"]: t["value"] for t in experiment["tags"]}
        assert experiment["name"] == trained_study.mlflow.experiment_name
        assert tags["mlflow.experimentKind"] == "custom_model_development" and tags["mlflow.note.content"]
        run = json.loads(_get(f"{base}/ajax-api/2.0/mlflow/runs/get?run_id={run_id}", time.time() + 10))["run"]
        assert run["inputs"]["dataset_inputs"][0]["dataset"]["digest"], "the Datasets column is not None"
        model_id = {t["key"]: t["value"] for t in run["data"]["tags"]}["model.id"]
        logged = json.loads(_get(f"{base}/ajax-api/2.0/mlflow/logged-models/{model_id}", time.time() + 10))["model"]
        assert logged["info"]["source_run_id"] == run_id and logged["info"]["status"] == "LOGGED_MODEL_READY"
    finally:
        os.killpg(ui.pid, 15)
        ui.wait(timeout=30)
    assert client.get_run(run_id).info.artifact_uri.startswith((copy / "experiments" / "mlartifacts").as_uri())

    name = str(trained_study.export.registered_name)
    script = ("import mlflow, sys\n"
              "model = mlflow.pyfunc.load_model(f'models:/{sys.argv[1]}/latest')\n"
              "print(model.metadata.get_input_schema().input_names())\n")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}"}
    loaded = subprocess.run([sys.executable, "-c", script, name], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert "image" in loaded.stdout


def test_relocation_leaves_other_locations_alone(tmp_path):
    from crossmed.mlflow_store import _relocated

    root = (tmp_path / "new" / "mlartifacts").as_uri()
    assert _relocated("file:///old/place/mlartifacts/abc/artifacts/model", root) == f"{root}/abc/artifacts/model"
    assert _relocated(f"{root}/abc", root) is None, "already here"
    assert _relocated("s3://bucket/mlartifacts/abc", root) is None, "a remote store is not a local folder"
    assert _relocated("mlflow-artifacts:/1/abc", root) is None
    assert _relocated("/old/mlruns/0", root) is None


@pytest.fixture(autouse=True)
def _no_registry_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
