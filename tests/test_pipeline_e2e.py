"""The real DVC pipeline, end to end, in a fresh git repository: dvc repro, a no-op repro, dvc exp run, and a site's
run against the team's shared set-up (MLflow on PostgreSQL with accounts, the S3 store and DVC remote)."""

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO
from crossmed.shared_tracking.accounts import signed_in
from crossmed.shared_tracking.home import TrackingHome
from crossmed.shared_tracking.stack import s3_store
from study_repos import GIT, smoke_study_repo
from study_repos import sh as _sh
from tracking_servers import NO_POSTGRES, Stack, postgres_installed, tracking_cli
from crossmed.data.processed import data_fingerprint


@pytest.fixture(scope="module")
def study_repo(tmp_path_factory):
    """A copy of the project's tracked files in a new git repo, with params.yaml composed for the smoke experiment."""
    repo = smoke_study_repo(tmp_path_factory.mktemp("e2e") / "crossmed")
    output = _sh(["dvc", "repro"], repo)
    _sh([*GIT, "add", "-A"], repo)
    _sh([*GIT, "commit", "-q", "-m", "dvc.lock"], repo)
    return repo, output, GIT


@pytest.mark.slow
def test_dvc_repro_runs_every_stage(study_repo):
    repo, output, _ = study_repo
    for stage in ("synthesize", "deidentify", "preprocess", "train", "evaluate", "export", "validate_sites", "report"):
        assert f"Running stage '{stage}'" in output
    assert (repo / "experiments" / "reports" / "validation_report.html").stat().st_size > 10_000
    metrics = json.loads((repo / "experiments" / "metrics.json").read_text())
    assert list(metrics) == ["internal_test", "external_test"], "headline figures only; the rest is in evaluation/"
    headline = {"auc", "sensitivity", "specificity", "ppv", "npv", "brier"}
    assert set(metrics["internal_test"]) == {f"{m}{s}" for m in headline for s in ("", "_ci_low", "_ci_high")} | {"ece"}
    assert {"auc_gap", "auc_gap_ci_low", "auc_gap_ci_high"} <= set(metrics["external_test"])
    everything = json.loads((repo / "experiments" / "evaluation" / "metrics_all.json").read_text())
    assert everything["internal_test"]["auc"] == metrics["internal_test"]["auc"] and "accuracy" in everything["internal_test"]
    assert (repo / "models" / "export" / "model" / "model.ts").stat().st_size > 0
    assert set(json.loads((repo / "models" / "export" / "model" / "model.json").read_text())["files"]) == {"torchscript", "onnx"}
    assert (repo / "models" / "export" / "bundle" / "configs" / "metadata.json").is_file()
    assert (repo / "data" / "deidentified" / "KR" / "audit.csv").is_file()
    run_id = json.loads((repo / "experiments" / "train" / "mlflow_run.json").read_text())["run_id"]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'experiments' / 'mlflow.db'}")
    run = client.get_run(run_id)
    assert run.data.params["data.image_size"] == "32"
    assert run.data.metrics["internal_test/auc"] == metrics["internal_test"]["auc"]
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    checkpoint = repo / "models" / "checkpoint.pt"
    assert run.data.tags["checkpoint.md5"] == hashlib.md5(checkpoint.read_bytes()).hexdigest() == _out_md5(lock, "models/checkpoint.pt")
    assert run.data.tags["data.sha256"] == data_fingerprint(repo / "data" / "processed"), "the data this run read"
    assert run.data.tags["numerics.arithmetic"] == "portable" and run.data.tags["numerics.threads"] == "1"
    assert {a.path for a in client.list_artifacts(run_id)} >= {"model", "evaluation", "training"}


@pytest.mark.slow
def test_the_readme_exp_show_line_fits_a_200_column_terminal(study_repo):
    repo, _, _ = study_repo
    line = next(l for l in (REPO / "README.md").read_text().splitlines() if l.startswith("dvc exp show --drop"))
    args = shlex.split(line.split("  #")[0])
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "200"}
    shown = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    assert "internal_test.auc" in shown.stdout and "external_test.auc_gap" in shown.stdout and "…" not in shown.stdout
    assert max(len(l) for l in shown.stdout.splitlines()) <= 200


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium absent (scripts/bootstrap.sh test installs it)")
def test_dvc_plots_page_draws_every_chart_offline(study_repo, tmp_path):
    from PIL import Image

    repo, _, _ = study_repo
    _sh(["dvc", "plots", "show"], repo)
    page = repo / "dvc_plots" / "index.html"
    html = page.read_text()
    assert "<script src" not in html and "cdn.jsdelivr" not in html, "nothing loaded from the internet"
    drawn = set(re.findall(r'"field": "([a-z_]+)"', html))
    assert {"train_loss", "val_loss", "val_auc", "learning_rate", "tpr", "precision", "observed"} <= drawn
    assert "train_images" not in drawn, "only meaningful curves: no constant column drawn"
    chromium = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000",
                "--window-size=1400,3000", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*chromium, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    definitions = yaml.safe_load((repo / "dvc.yaml").read_text())["plots"]
    assert dom.count('class="marks"') == len(definitions) == 8, "one drawn chart per plot in dvc.yaml"
    for title in ("ROC", "Loss", "Validation AUC", "Learning rate", "true positive rate"):
        assert title in html
    subprocess.run([*chromium, f"--screenshot={tmp_path / 'page.png'}", page.as_uri()], capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(tmp_path / "page.png").convert("L"))
    assert (pixels < 200).mean() > 0.01, "lines, axes and cells are drawn, not a blank page"


@pytest.mark.slow
def test_second_repro_runs_nothing(study_repo):
    repo, _, _ = study_repo
    output = _sh(["dvc", "repro"], repo)
    assert "Running stage" not in output and "up to date" in output


@pytest.mark.slow
def test_a_failed_exp_run_keeps_the_data_and_the_readme_gets_back_to_the_committed_state(study_repo):
    repo, _, _ = study_repo
    raw = sorted(p.relative_to(repo) for p in (repo / "data" / "raw").rglob("*") if p.is_file())
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    failed = subprocess.run(["dvc", "exp", "run", "-S", "data=folder", "-S", "data.path=/nonexistent/typo"], cwd=repo,
                            env=env, capture_output=True, text=True, timeout=600)
    assert failed.returncode != 0 and "data.path must name a folder" in failed.stdout + failed.stderr
    assert sorted(p.relative_to(repo) for p in (repo / "data" / "raw").rglob("*") if p.is_file()) == raw, "data kept"
    assert "params.yaml" in _sh(["git", "status", "--porcelain"], repo), "DVC composed params.yaml before running"
    readme = (REPO / "README.md").read_text()
    restore = next(l for l in readme.splitlines() if l.startswith("git checkout -- params.yaml dvc.lock"))
    _sh(["bash", "-c", restore.split("  #")[0]], repo)
    assert _sh(["git", "status", "--porcelain"], repo) == "" and "up to date" in _sh(["dvc", "status"], repo)
    # The default remote (a folder beside the checkout) takes a push, and a pull brings back what the cache lost.
    assert "pushed" in _sh(["dvc", "push"], repo)
    assert (repo.parent / "crossmed-dvc-store").is_dir()
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "models" / "export")
    _sh(["dvc", "pull"], repo)
    assert (repo / "models" / "export" / "model" / "model.json").is_file() and "up to date" in _sh(["dvc", "status"], repo)


@pytest.mark.slow
def test_a_fresh_clone_reproduces_the_committed_study_and_tags_a_retrained_model(study_repo, tmp_path):
    """Same commit + same data = same bytes: a clone's repro leaves git and DVC clean; then new weights get new tags."""
    repo, _, git = study_repo
    clone = tmp_path / "clone"
    _sh(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    output = _sh(["dvc", "repro"], clone)
    assert "Running stage 'train'" in output and "Running stage 'report'" in output
    assert _sh(["git", "status", "--porcelain"], clone) == "", "the committed dvc.lock and metrics were reproduced"
    cache = clone / "src" / "crossmed" / "deid" / "__pycache__"  # Python writes these on import (not here: the
    cache.mkdir(exist_ok=True)                                   # test environment may set PYTHONDONTWRITEBYTECODE)
    (cache / "profile.cpython-311.pyc").write_bytes(b"byte code")
    assert "up to date" in _sh(["dvc", "status"], clone), "byte-code caches are not part of a stage's inputs"
    assert (clone / "experiments" / "reports" / "validation_report.html").read_bytes() == \
        (repo / "experiments" / "reports" / "validation_report.html").read_bytes()
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["train"]["learning_rate"] = 0.02
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _sh(["dvc", "repro", "train"], clone)  # the new run's tags are set by the train stage
    lock = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]
    committed = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    new = hashlib.md5((clone / "models" / "checkpoint.pt").read_bytes()).hexdigest()
    assert new == _out_md5(lock, "models/checkpoint.pt") != _out_md5(committed, "models/checkpoint.pt"), "the weights changed"
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{clone / 'experiments' / 'mlflow.db'}")
    latest = client.search_runs([e.experiment_id for e in client.search_experiments()], order_by=["attributes.start_time DESC"],
                                max_results=1)[0]
    assert latest.data.tags["checkpoint.md5"] == new, "the run is tagged with the checkpoint it wrote, not the committed one"
    assert latest.data.params["train.learning_rate"] == "0.02"


@pytest.mark.slow
def test_queued_grid_sweep_records_into_the_project_store(study_repo):
    import time

    repo, _, _ = study_repo
    output = _sh(["dvc", "exp", "run", "--queue", "-n", "lr", "-S", "experiment=smoke", "-S", "train.max_epochs=1",
                  "-S", "train.learning_rate=0.01,0.003",  # not 0.001: DVC would restore that run from its run-cache
                  "train"], repo)  # up to the train stage: it opens the MLflow run (the later stages are tested above)
    assert "Queued experiment 'lr-1'" in output and "Queued experiment 'lr-2'" in output
    _sh(["dvc", "queue", "start"], repo)
    deadline = time.time() + 600
    while time.time() < deadline:
        status = _sh(["dvc", "queue", "status"], repo)
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    assert status.count("Success") >= 2, status + _sh(["dvc", "queue", "logs", "lr-1"], repo)
    shown = json.loads(_sh(["dvc", "exp", "show", "--json"], repo))
    rates = {rev["name"]: rev["data"]["params"]["params.yaml"]["data"]["train"]["learning_rate"]
             for entry in shown for exp in (entry.get("experiments") or []) for rev in exp.get("revs", [])
             if rev.get("name", "").startswith("lr-")}
    assert rates == {"lr-1": 0.01, "lr-2": 0.003}
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'experiments' / 'mlflow.db'}")
    names = {run.info.run_name: run for run in client.search_runs(
        [e.experiment_id for e in client.search_experiments()], filter_string="tags.`dvc.experiment` LIKE 'lr-%'")}
    assert set(names) == {"lr-1", "lr-2"}, "queued runs record into the project's store under their experiment names"
    assert names["lr-1"].data.params["train.learning_rate"] == "0.01" and "training/best_val_auc" in names["lr-1"].data.metrics


@pytest.mark.slow
def test_dvc_exp_run_composes_overrides_on_a_medmnist_file(study_repo, tmp_path):
    from test_medmnist import write_npz

    repo, _, _ = study_repo
    npz = write_npz(tmp_path / "pathmnist_28.npz", "pathmnist", n=12)
    output = _sh(["dvc", "exp", "run", "-S", "experiment=smoke", "-S", "data=medmnist", "-S", "data.subset=pathmnist",
                  "-S", f"data.path={npz}", "-S", "data.image_size=null", "-S", "train.max_epochs=1",
                  "-n", "pathmnist", "evaluate"], repo)  # up to evaluate: export of MedMNIST models is tested in test_sources
    for stage in ("deidentify", "preprocess", "train", "evaluate"):  # synthesize is not upstream of a MedMNIST file
        assert f"Running stage '{stage}'" in output
    shown = json.loads(_sh(["dvc", "exp", "show", "--json"], repo))
    assert "balanced_accuracy" in json.dumps(shown)  # the multi-class metrics of this experiment
    experiments = [exp for entry in shown for exp in (entry.get("experiments") or [])]
    params = [rev["data"]["params"]["params.yaml"]["data"]["train"]["max_epochs"]
              for exp in experiments for rev in exp.get("revs", []) if rev.get("name") == "pathmnist"]
    assert params == [1], "the -S overrides were composed into this experiment's params"
    card = json.loads((repo / "data" / "processed" / "data_card.json").read_text())
    assert card["source"]["type"] == "medmnist" and card["task"]["type"] == "multiclass"
    assert card["image_shape"] == [3, 28, 28]
    reference = json.loads((repo / "experiments" / "train" / "mlflow_run.json").read_text())
    run = mlflow.MlflowClient(tracking_uri=reference["tracking_uri"]).get_run(reference["run_id"])
    assert run.info.run_name == "pathmnist", "the MLflow run carries the DVC experiment's name"


@pytest.mark.slow
def test_random_search_queues_named_experiments(study_repo):
    repo, _, _ = study_repo
    output = _sh([sys.executable, "-m", "crossmed.cli", "sweep", "-n", "rs", "--trials", "2", "--seed", "5",
                  "train.learning_rate=loguniform(1e-4,1e-2)", "-S", "experiment=smoke"], repo)
    assert "queued 2 experiments" in output
    status = _sh(["dvc", "queue", "status"], repo)
    assert status.count("Queued") == 2 and "rs-1" in status and "rs-2" in status
    _sh(["dvc", "queue", "remove", "--queued"], repo)


@pytest.mark.slow
def test_no_raw_value_or_key_reaches_the_cache_a_remote_or_any_output(study_repo, tmp_path):
    """Push to a DVC remote as a study team would, then search every byte that could leave the site."""
    from crossmed.deid.leak_scan import scan_files

    repo, repro_log, _ = study_repo
    _sh(["dvc", "remote", "add", "--local", "-d", "team", str(tmp_path / "remote")], repo)
    # Every commit's outputs, as a team shares its history (the workspace may hold a later experiment by now).
    (tmp_path / "logs.txt").write_text(repro_log + _sh(["dvc", "push", "--all-commits"], repo), encoding="utf-8")
    raw, site = repo / "data" / "raw", repo / "data" / "site"
    values, secrets = _site_only_values(repo)
    assert len(values) > 200 and len(secrets) == 4
    assert not any(p.is_relative_to(raw) or p.is_relative_to(site) for p in map(Path, _tracked_by_dvc(repo)))
    shared = [tmp_path / "remote", tmp_path / "logs.txt", repo / ".dvc" / "cache", repo / "experiments", repo / "models",
              repo / "data", repo / "dvc.lock", repo / "params.yaml"]
    result = scan_files(shared, values, secrets=secrets, skip=(raw, site), published=(repo / "src",))
    assert result.files > 100 and result.bytes > 1_000_000
    assert result.hits == {}, f"{len(result.hits)} file(s) hold raw values: {dict(list(result.hits.items())[:5])}"
    import pydicom

    pushed = [p for p in (tmp_path / "remote").rglob("*") if p.is_file() and p.read_bytes()[128:132] == b"DICM"]
    assert pushed and all(pydicom.dcmread(p, stop_before_pixels=True).PatientIdentityRemoved == "YES" for p in pushed)


def _site_only_values(repo: Path) -> tuple[set[str], tuple[bytes, ...]]:
    """Return what must never leave the site: every value of the raw DICOM files and labels, and the site keys
    (as text and as bytes)."""
    from crossmed.deid.leak_scan import dicom_values, table_values

    raw, site = repo / "data" / "raw", repo / "data" / "site"
    values = set()
    for path in raw.rglob("*.dcm"):
        values |= dicom_values(path)
    for labels in raw.glob("*/labels.csv"):
        values |= table_values(labels, ("patient_id", "patient_name"))
    keys = [key.read_text().strip().encode() for key in (site / "keys").glob("*.key")]
    return values, (*keys, *(bytes.fromhex(k.decode()) for k in keys))


def _out_md5(lock_stages: dict, path: str) -> str:
    """Return the md5 dvc.lock records for one output path."""
    return next(out["md5"] for stage in lock_stages.values() for out in stage.get("outs", []) if out["path"] == path)


def _tracked_by_dvc(repo: Path) -> list[str]:
    """Return the output paths DVC caches (cache: false outputs excluded)."""
    import yaml

    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    paths = []
    for stage in stages.values():
        for out in stage.get("outs", []):
            path, options = (out, {}) if isinstance(out, str) else next(iter(out.items()))
            if (options or {}).get("cache", True):
                paths.append(str(repo / path))
    return paths


@pytest.mark.slow
def test_dvc_exp_run_trains_by_federation_and_the_later_stages_take_its_model(study_repo):
    """`dvc exp run -S train=federated`: a coordinator and two site processes (KR, EE both training) train the model
    that evaluate and report then use unchanged; MLflow has the federation's run and a nested run per site."""
    import torch

    from crossmed.federated.processes import can_hide_folders

    repo, _, _ = study_repo
    output = _sh(["dvc", "exp", "run", "-n", "federated", "-S", "experiment=smoke", "-S", "train=federated",
                  "-S", "study.external_sites=[]", "-S", "train.federated.rounds=1", "-S", "train.federated.local_epochs=2",
                  "-S", "export.formats=[torchscript]",
                  "report"], repo)  # the report needs the site reports, which validate the exported federated model
    for stage in ("preprocess", "train", "evaluate", "export", "validate_sites", "report"):
        assert f"Running stage '{stage}'" in output
    assert "2 site process(es) (KR, EE)" in output
    if can_hide_folders():
        assert "the site folders empty in its mount namespace" in output
    assert "(TLS, registered sites only)" in output
    history = (repo / "experiments" / "train" / "history.csv").read_text().splitlines()
    assert history[0] == "epoch,round,train_loss,val_loss,val_auc,learning_rate,train_images" and history[1].startswith("2,1,")
    checkpoint = torch.load(repo / "models" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert checkpoint["federated"] == {"sites": ["KR", "EE"], "rounds": 1, "local_epochs": 2, "aggregation": "fedavg",
                                       "best_round": 1} and checkpoint["epoch"] == 2
    assert not (repo / "models" / "federation" / "site_data").exists(), "the sites' cuts are removed after training"
    run_id = json.loads((repo / "experiments" / "train" / "mlflow_run.json").read_text())["run_id"]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'experiments' / 'mlflow.db'}")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["train.strategy"] == "federated"
    assert run.data.tags["federated.sites"] == "KR,EE" and run.data.params["federated.rounds"] == "1"
    assert run.data.metrics["round/bytes_sent"] > 1e6 and 0 <= run.data.metrics["round/val_auc"] <= 1
    assert "internal_test/auc" in run.data.metrics, "evaluate found the federated training run by the checkpoint's hash"
    sites = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    assert sorted(s.data.tags["federated.site"] for s in sites) == ["EE", "KR"]
    assert all(s.info.status == "FINISHED" and "site/train_loss" in s.data.metrics for s in sites)
    report = (repo / "experiments" / "reports" / "validation_report.md").read_text()
    assert "federated learning (fedavg) across sites KR, EE" in report and "global model of round 1 (epoch 2" in report
    manifest = pd.read_csv(repo / "data" / "processed" / "manifest.csv", dtype=str)
    for site in ("KR", "EE"):  # each site validated the export, unless its test set is too small to report (smoke data)
        test = manifest[(manifest["site"] == site) & (manifest["split"] == "test")]
        per_class = test.groupby("label")["patient_id"].nunique()
        reportable = len(per_class) == 2 and per_class.min() >= 2  # experiment=smoke: min_patients 2
        assert (f"| {site} | internal test |" in report) == reportable, (site, per_class.to_dict())


# The team's shared set-up: a site logs to the shared MLflow server, the team shares outputs through the S3 remote.

def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def team(study_repo, tmp_path_factory):
    """The shared set-up (PostgreSQL, moto S3, MLflow with basic auth) with user KR, and KR's `dvc exp run` of the
    study (one epoch, through export) logging to it, committed afterwards as a team member would."""
    if not postgres_installed():
        pytest.skip(NO_POSTGRES)
    repo, _, _ = study_repo
    stack = Stack(tmp_path_factory.mktemp("tracking") / "home")
    try:
        kr = stack.add_user("KR")
        output = _sh(["dvc", "exp", "run", "-n", "kr-shared", "-S", "experiment=smoke", "-S", "train.max_epochs=1",
                      "-S", "train.learning_rate=0.005",  # new weights, so evaluate and export run again
                      "export"], repo, env=kr)
        _sh([*GIT, "add", "-A"], repo)
        _sh([*GIT, "commit", "-q", "-m", "the smoke study, trained against the shared server"], repo)
        yield stack, kr, repo, output
    finally:
        stack.down("--delete-data")


def _training_run(stack, kr, repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    with signed_in(kr["MLFLOW_TRACKING_USERNAME"], kr["MLFLOW_TRACKING_PASSWORD"]):
        client = mlflow.MlflowClient(stack.uri)
        experiment = client.get_experiment_by_name(params["mlflow"]["experiment_name"])
        runs = client.search_runs([experiment.experiment_id], "tags.`dvc.experiment` = 'kr-shared'")
    assert len(runs) == 1
    return runs[0], params


@pytest.mark.slow
def test_a_sites_exp_run_records_its_run_artifacts_and_model_on_the_shared_server(team):
    stack, kr, repo, output = team
    run, params = _training_run(stack, kr, repo)
    for stage in ("train", "evaluate", "export"):
        assert f"Running stage '{stage}'" in output, output[-3000:]
    assert run.info.status == "FINISHED" and "internal_test/auc" in run.data.metrics, output[-3000:]
    assert run.data.tags["checkpoint.sha256"] == _sha256((repo / "models" / "checkpoint.pt").read_bytes())
    assert json.loads((repo / "experiments" / "train" / "mlflow_run.json").read_text())["tracking_uri"] == stack.uri

    store = s3_store(TrackingHome(stack.home), stack.state)
    prefix = f"mlartifacts/{run.info.experiment_id}/{run.info.run_id}/artifacts/"
    in_bucket = {key.removeprefix(prefix): key for key in store.objects(prefix)}
    local = {"training/history.csv": repo / "experiments" / "train" / "history.csv",
             "data/data_card.json": repo / "data" / "processed" / "data_card.json",
             "evaluation/metrics_all.json": repo / "experiments" / "evaluation" / "metrics_all.json"}
    assert set(local) <= set(in_bucket), sorted(in_bucket)
    for path, file in local.items():
        body = store.client().get_object(Bucket=store.bucket, Key=in_bucket[path])["Body"].read()
        assert _sha256(body) == _sha256(file.read_bytes()), f"{path} in the bucket differs from {file}"

    name = params["export"]["registered_name"]
    image = next((repo / "data" / "deidentified").rglob("*.dcm")).read_bytes()
    frame = pd.DataFrame({"image": [image]})
    with signed_in(kr["MLFLOW_TRACKING_USERNAME"], kr["MLFLOW_TRACKING_PASSWORD"]):
        mlflow.set_tracking_uri(stack.uri)
        version = mlflow.MlflowClient(stack.uri).search_model_versions(f"name='{name}'")[0]
        assert version.tags["training_run"] == run.info.run_id
        served = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}").predict(frame)
    here = mlflow.pyfunc.load_model(str(repo / "models" / "export" / "mlflow_model")).predict(frame)
    assert served.iloc[0].to_dict() == here.iloc[0].to_dict()


@pytest.mark.slow
def test_dvc_push_then_pull_into_a_fresh_clone_reproduces_the_outputs_and_the_bucket_holds_no_phi(team, tmp_path):
    from crossmed.deid.leak_scan import scan_files

    stack, kr, repo, _ = team
    tracking_cli(stack.home, "remote", "--project", str(repo))
    assert "secret_access_key" in (repo / ".dvc" / "config.local").read_text()
    assert "secret_access_key" not in (repo / ".dvc" / "config").read_text()
    assert _sh(["git", "status", "--porcelain"], repo) == "", "configuring the remote changed no tracked file"
    _sh(["dvc", "push"], repo)

    clone = tmp_path / "clone"
    _sh(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    tracking_cli(stack.home, "remote", "--project", str(clone))
    _sh(["dvc", "pull"], clone)
    # The clone's stages stand as the pushing checkout's do, but for the raw data, which never leaves the site.
    status = json.loads(_sh(["dvc", "status", "--json"], clone))
    raw_only = {stage for stage, entries in status.items() if all(json.dumps(e).count("data/raw") == 1 for e in entries)}
    assert raw_only == {"synthesize", "deidentify", "preprocess"}, status
    assert {k: v for k, v in status.items() if k not in raw_only} == json.loads(_sh(["dvc", "status", "--json"], repo))
    for output in ("models/checkpoint.pt", "experiments/metrics.json", "models/export/model/model.onnx",
                   "data/processed/images.npy"):
        assert (clone / output).read_bytes() == (repo / output).read_bytes(), output

    store = s3_store(TrackingHome(stack.home), stack.state)
    copy = tmp_path / "bucket"
    for key in store.objects():
        (copy / key).parent.mkdir(parents=True, exist_ok=True)
        store.client().download_file(store.bucket, key, str(copy / key))
    values, secrets = _site_only_values(repo)
    result = scan_files([copy], values, secrets=secrets, published=(repo / "src",))
    assert result.files > 50 and len(values) > 100
    assert result.hits == {}, f"{len(result.hits)} object(s) hold raw values: {dict(list(result.hits.items())[:5])}"
