"""The shared tracking set-up on real servers (PostgreSQL, moto's S3, MLflow with basic auth), on 127.0.0.1 only:
who can read what, where artifacts and secrets go, and what survives a restart."""

import hashlib
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import requests

from crossmed.ports import listening
from crossmed.shared_tracking import daemons
from crossmed.shared_tracking.accounts import signed_in
from crossmed.shared_tracking.home import TrackingHome
from crossmed.shared_tracking.postgres import Postgres
from crossmed.shared_tracking.stack import s3_store
from conftest import REPO, tiny_config
from omegaconf import OmegaConf
from tracking_servers import NO_POSTGRES, Stack, postgres_installed, tracking_cli

pytestmark = pytest.mark.skipif(not postgres_installed(), reason=NO_POSTGRES)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The set-up with two site users and what each made: KR's own experiment, run, artifact and registered model, and
    a shared experiment KR edits and EE reads."""
    stack = Stack(tmp_path_factory.mktemp("tracking") / "home")
    try:
        stack.users = {site: stack.add_user(site) for site in ("KR", "EE")}
        tracking_cli(stack.home, "grant", "KR", "EDIT", "--experiment", "study-shared", "--create")
        tracking_cli(stack.home, "grant", "EE", "READ", "--experiment", "study-shared")
        artifact = tmp_path_factory.mktemp("artifact") / "notes.txt"
        artifact.write_text("aggregate figures only\n")
        with signed_in("KR", stack.users["KR"]["MLFLOW_TRACKING_PASSWORD"]):
            client = mlflow.MlflowClient(stack.uri)
            shared = client.get_experiment_by_name("study-shared").experiment_id
            stack.shared_run = client.create_run(shared).info.run_id
            client.log_artifact(stack.shared_run, str(artifact))
            client.set_terminated(stack.shared_run)
            own = client.create_experiment("kr-private")
            run = client.create_run(own)
            client.log_metric(run.info.run_id, "auc", 0.9)
            client.log_artifact(run.info.run_id, str(artifact))
            client.set_terminated(run.info.run_id)
            client.create_registered_model("kr-model")
            client.create_model_version("kr-model", f"runs:/{run.info.run_id}/notes.txt", run.info.run_id)
        stack.private_run, stack.private_experiment, stack.artifact = run, own, artifact
        yield stack
    finally:
        pids = [p for p in stack.state.get("processes", {}).values()] if (stack.home / "state.json").is_file() else []
        ports = stack.state.get("ports", {}).values() if (stack.home / "state.json").is_file() else []
        stack.down("--delete-data")
        assert not any(daemons.alive(record) for record in pids), "a server outlived `crossmed tracking down`"
        assert not any(listening(port) for port in ports), "a port still answers after `crossmed tracking down`"
        assert not stack.home.exists()


def _status_codes(stack, auth) -> dict:
    """Return the HTTP status of each read of KR's private run, artifact and model, and of EE-style writes."""
    run = stack.private_run
    artifact_path = run.info.artifact_uri.removeprefix("mlflow-artifacts:/")
    get = lambda route, **params: requests.get(f"{stack.uri}{route}", params=params, auth=auth, timeout=30).status_code
    return {"run": get("/api/2.0/mlflow/runs/get", run_id=run.info.run_id),
            "metric history": get("/api/2.0/mlflow/metrics/get-history", run_id=run.info.run_id, metric_key="auc"),
            "experiment": get("/api/2.0/mlflow/experiments/get", experiment_id=stack.private_experiment),
            "artifact (proxy)": get(f"/api/2.0/mlflow-artifacts/artifacts/{artifact_path}/notes.txt"),
            "artifact (UI)": get("/get-artifact", path="notes.txt", run_uuid=run.info.run_id),
            "artifact list": get("/api/2.0/mlflow/artifacts/list", run_id=run.info.run_id),
            "registered model": get("/api/2.0/mlflow/registered-models/get", name="kr-model"),
            "model version": get("/api/2.0/mlflow/model-versions/get", name="kr-model", version="1")}


@pytest.mark.slow
def test_anonymous_callers_get_401_unpermitted_users_403_and_permitted_ones_200(stack):
    """The permission matrix on runs, artifacts and the registry: KR's private experiment and model."""
    expected = {"anonymous": 401, "EE (no permission)": 403, "KR (its owner)": 200, "admin": 200}
    who = {"anonymous": None, "EE (no permission)": ("EE", stack.users["EE"]["MLFLOW_TRACKING_PASSWORD"]),
           "KR (its owner)": ("KR", stack.users["KR"]["MLFLOW_TRACKING_PASSWORD"]), "admin": stack.admin}
    matrix = {name: _status_codes(stack, auth) for name, auth in who.items()}
    wrong = {(name, what): code for name, codes in matrix.items() for what, code in codes.items() if code != expected[name]}
    assert not wrong, f"unexpected status codes: {wrong}"
    bad_password = _status_codes(stack, ("KR", "not-the-password"))
    assert set(bad_password.values()) == {401}


@pytest.mark.slow
def test_a_shared_experiment_is_read_by_its_readers_and_written_by_its_editors_only(stack):
    ee = ("EE", stack.users["EE"]["MLFLOW_TRACKING_PASSWORD"])
    kr = ("KR", stack.users["KR"]["MLFLOW_TRACKING_PASSWORD"])
    shared = mlflow.MlflowClient(stack.uri)
    with signed_in(*stack.admin):
        experiment = shared.get_experiment_by_name("study-shared").experiment_id
    read = requests.get(f"{stack.uri}/api/2.0/mlflow/runs/get", params={"run_id": stack.shared_run}, auth=ee, timeout=30)
    assert read.status_code == 200
    create = lambda auth: requests.post(f"{stack.uri}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment},
                                        auth=auth, timeout=30).status_code
    assert create(ee) == 403 and create(kr) == 200
    with signed_in(*ee):  # EE's searches list what it may read, nothing more
        names = {e.name for e in mlflow.MlflowClient(stack.uri).search_experiments()}
        models = {m.name for m in mlflow.MlflowClient(stack.uri).search_registered_models()}
    assert "study-shared" in names and "kr-private" not in names and "kr-model" not in models


@pytest.mark.slow
def test_artifacts_land_in_the_bucket_through_the_proxy_and_secrets_stay_in_owner_only_files(stack):
    home = TrackingHome(stack.home)
    store = s3_store(home, stack.state)
    keys = list(store.objects("mlartifacts/"))
    assert any(key.endswith(f"{stack.private_run.info.run_id}/artifacts/notes.txt") for key in keys), keys
    key = next(k for k in keys if stack.private_run.info.run_id in k)
    body = store.client().get_object(Bucket=store.bucket, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(stack.artifact.read_bytes()).hexdigest()

    assert stat.S_IMODE(os.stat(home.secrets).st_mode) == 0o700 and stat.S_IMODE(os.stat(home.root).st_mode) == 0o700
    files = [p for p in home.secrets.rglob("*") if p.is_file()]
    assert len(files) >= 6 and all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in files)
    passwords = [(home.secrets / name).read_text().strip() for name in ("admin-password", "postgres-password",
                                                                        "flask-secret-key", "s3-secret-access-key")]
    passwords += [credentials["MLFLOW_TRACKING_PASSWORD"] for credentials in stack.users.values()]
    postgres = Postgres.for_home(home, stack.state["ports"]["postgres"])
    readable = [stack.home / "state.json", *home.logs.rglob("*"), postgres.log_file]
    cmdlines = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in os.listdir("/proc") if pid.isdigit()
                and Path(f"/proc/{pid}/cmdline").exists()]
    for password in passwords:
        assert len(password) >= 24
        assert not any(password.encode() in p.read_bytes() for p in readable if p.is_file()), "a password in a log"
        assert not any(password.encode() in line for line in cmdlines), "a password on a command line"
        assert password not in stack.up_output.stdout + stack.up_output.stderr


def _train(config: Path, env: dict, pause_at: str | None = None, while_paused=None) -> tuple[int, str]:
    """Run the train stage in its own process as a site would; at the log line `pause_at`, stop it (SIGSTOP), call
    `while_paused`, and let it go on. Return (exit code, log)."""
    process = subprocess.Popen([sys.executable, str(REPO / "pipelines" / "train.py"), "--config-dir", str(config.parent),
                                "--config-name", config.stem], stderr=subprocess.PIPE, text=True, cwd=config.parent,
                               env={**os.environ, **env, "PYTHONUNBUFFERED": "1"})
    lines = []
    for line in process.stderr:
        lines.append(line)
        if pause_at and pause_at in line:
            process.send_signal(signal.SIGSTOP)
            while_paused()
            process.send_signal(signal.SIGCONT)
            pause_at = None
    return process.wait(timeout=600), "".join(lines)


@pytest.mark.slow
def test_a_training_whose_server_is_killed_stops_clearly_and_its_rerun_resumes_the_same_run(stack, tiny_study, tmp_path):
    """MLflow killed after epoch 1 of 3: the stage names the run and what it kept; after `up`, a rerun resumes the run
    and the training, and the run ends FINISHED with every epoch recorded once."""
    cfg = tiny_config(tmp_path / "study", "device=cpu", "train.max_epochs=3", "train.batch_size=8")
    cfg.paths.processed = tiny_study.paths.processed
    cfg.mlflow.experiment_name = "kr-interrupted"
    OmegaConf.save(cfg, tmp_path / "train.yaml")
    site = {**stack.users["KR"], "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}

    def kill_mlflow():
        record = stack.state["processes"]["mlflow"]
        os.killpg(record["pid"], signal.SIGKILL)
        assert daemons.wait_until(lambda: not daemons.alive(record), 20)

    code, log = _train(tmp_path / "train.yaml", site, pause_at="epoch 1/3 done", while_paused=kill_mlflow)
    assert code != 0, log[-3000:]
    assert (tmp_path / "study" / "experiments" / "train" / "mlflow_run.json").is_file(), log[-3000:]
    reference = (tmp_path / "study" / "experiments" / "train" / "mlflow_run.json").read_text()
    run_id = OmegaConf.create(reference).run_id
    assert f"the MLflow server at {stack.uri} stopped answering during run {run_id}" in log, log[-3000:]
    assert "shows RUNNING there" in log and "resumes this run and the training after epoch" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]

    tracking_cli(stack.home, "up")  # MLflow again, on the same port; PostgreSQL and S3 kept running
    with signed_in("KR", stack.users["KR"]["MLFLOW_TRACKING_PASSWORD"]):
        client = mlflow.MlflowClient(stack.uri)
        assert client.get_run(run_id).info.status == "RUNNING"  # as the message said
        code, log = _train(tmp_path / "train.yaml", stack.users["KR"])
        assert code == 0, log[-3000:]
        assert "resum" in log
        run = client.get_run(run_id)
        steps = [m.step for m in client.get_metric_history(run_id, "epoch/train_loss")]
    assert run.info.status == "FINISHED" and sorted(steps) == [1, 2, 3], (run.info.status, steps)
    assert run.data.tags["checkpoint.sha256"] == hashlib.sha256(
        (tmp_path / "study" / "models" / "checkpoint.pt").read_bytes()).hexdigest()


def _every_run(stack) -> set[str]:
    """Return the id of every run on the server, as the admin sees them."""
    with signed_in(*stack.admin):
        client = mlflow.MlflowClient(stack.uri)
        experiments = [e.experiment_id for e in client.search_experiments()]
        return {run.info.run_id for run in client.search_runs(experiments, max_results=1000)}


@pytest.mark.slow
def test_status_names_each_server_and_a_postgres_restart_or_down_and_up_keeps_every_run(stack):
    report = stack.status()
    assert {name: server["running"] for name, server in report["servers"].items()} == \
           {"postgres": True, "s3": True, "mlflow": True}
    assert report["servers"]["mlflow"]["address"] == stack.uri
    before = _every_run(stack)
    assert stack.private_run.info.run_id in before

    home = TrackingHome(stack.home)
    Postgres.for_home(home, stack.state["ports"]["postgres"]).restart()
    assert _every_run(stack) == before

    stack.down()
    assert {name: server.get("running") for name, server in stack.status()["servers"].items()} == \
           {"postgres": False, "s3": False, "mlflow": False}
    stack.up_output = Stack(stack.home).up_output
    with signed_in("KR", stack.users["KR"]["MLFLOW_TRACKING_PASSWORD"]):
        client = mlflow.MlflowClient(stack.uri)
        assert client.get_run(stack.private_run.info.run_id).data.metrics == {"auc": 0.9}
        local = client.download_artifacts(stack.private_run.info.run_id, "notes.txt", str(stack.home.parent))
    assert Path(local).read_bytes() == stack.artifact.read_bytes()
