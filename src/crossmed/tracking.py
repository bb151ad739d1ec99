"""MLflow runs for a study: the store, the run shared by train/evaluate/export, and its tags."""

import hashlib
import json
import logging
import os
import subprocess
import warnings
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import mlflow
from omegaconf import DictConfig, OmegaConf

from crossmed.errors import CrossmedError, InputError
from crossmed.files import write_json_atomic
from crossmed.mlflow_store import artifact_root, local_database, relocate
from crossmed.shareable_config import shareable

log = logging.getLogger("crossmed.tracking")
TRACKED_PACKAGES = ["crossmed", "torch", "monai", "mlflow", "dvc", "hydra-core", "pydicom", "numpy", "scikit-learn", "onnx", "onnxruntime"]
CHECKPOINT_TAG = "checkpoint.sha256"  # set by the train stage once the checkpoint is written


# The caller's $MLFLOW_TRACKING_URI, read once: mlflow.set_tracking_uri writes that variable too, so reading it later
# would return whatever store this process opened last rather than the one the user chose.
AMBIENT_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


def tracking_uri(configured: str) -> str:
    """Return $MLFLOW_TRACKING_URI as the process started with it, else the configured URI.

    A relative sqlite path is taken from the DVC project's root when DVC names it (DVC_ROOT): queued
    experiments run in copies under .dvc/tmp/exps and must still record into the project's one store.
    """
    uri = AMBIENT_TRACKING_URI or configured
    database = uri.removeprefix("sqlite:///")
    if uri.startswith("sqlite:///") and not Path(database).is_absolute() and os.environ.get("DVC_ROOT"):
        return f"sqlite:///{Path(os.environ['DVC_ROOT']) / database}"
    return uri


# MLflow 3 opens an experiment in its GenAI view unless told it holds model training: then the runs table opens.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# MLflow's UI groups a run's charts by what precedes the last '/' of a metric's name and sorts the groups by name, so
# the per-epoch curves (epoch/) come first, then export/, each test set (external_test/, internal_test/ ...), training/.
EPOCH, TRAINING, EXPORT = "epoch", "training", "export"


def metric_names(section: str, values: dict) -> dict:
    """Return {'<section>/<name>': value} for the values that are set: one chart group in the MLflow UI."""
    return {f"{section}/{name}": value for name, value in values.items() if value is not None}


def experiment_description(cfg: DictConfig) -> str:
    """Return the text the MLflow UI shows above the study's runs (Markdown)."""
    external = ", ".join(cfg.study.external_sites) or "none"
    return (f"crossmed study **{cfg.study.name}**: sites {', '.join(cfg.study.sites)} (external test: {external}). "
            "One run per training; evaluate and export add to it. In a run: *Model metrics* shows the per-epoch "
            "curves (epoch/) and each test set's figures; *Artifacts* holds evaluation/, model/ and the data card.")


def _experiment_id(name: str, description: str) -> str:
    """Return the study's experiment, created (or completed) as a model-training experiment with its description."""
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        experiment_id = mlflow.create_experiment(name, artifact_location=local_artifact_location(mlflow.get_tracking_uri()),
                                                 tags={**EXPERIMENT_KIND, "mlflow.note.content": description})
        if not is_server(mlflow.get_tracking_uri()):  # a shared server's Default is its admin's
            _drop_empty_default_experiment()
        return experiment_id
    if experiment.tags.get("mlflow.experimentKind") != EXPERIMENT_KIND["mlflow.experimentKind"]:
        mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, "mlflow.experimentKind",
                                                 EXPERIMENT_KIND["mlflow.experimentKind"])
    return experiment.experiment_id


def _drop_empty_default_experiment() -> None:
    """Delete the 'Default' experiment MLflow creates in a new store when it holds no run: the UI then lists the study only."""
    client = mlflow.MlflowClient()
    default = client.get_experiment_by_name("Default")
    if default is None or default.lifecycle_stage != "active":
        return
    if not client.search_runs([default.experiment_id], max_results=1, run_view_type=mlflow.entities.ViewType.ALL):
        try:
            client.delete_experiment(default.experiment_id)
        except mlflow.exceptions.MlflowException as err:  # a server may refuse; an empty Default does no harm
            log.debug("kept MLflow's Default experiment: %s", err)


def local_artifact_location(uri: str) -> str | None:
    """Return the artifact folder beside a local sqlite store (as a file URI), or None to let a server decide."""
    database = local_database(uri)
    return artifact_root(database) if database is not None else None


def open_store(configured: str) -> str:
    """Set the tracking URI (see tracking_uri) and, for a local store that was moved or copied, relocate its artifact
    locations to the folder beside it; return the URI. A server that does not answer is a TrackingLost error."""
    uri = tracking_uri(configured)
    if not server_answers(uri):
        raise TrackingLost(f"the MLflow server at {uri} does not answer ({uri.rstrip('/')}/health): start it (a shared "
                           "set-up: crossmed tracking up) or unset MLFLOW_TRACKING_URI to use the local store")
    relocate(uri)
    mlflow.set_tracking_uri(uri)
    return uri


def flatten(cfg: DictConfig | dict, prefix: str = "") -> dict:
    """Return a nested config as {'a.b.c': value} with list values as their JSON text."""
    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = json.dumps(value, ensure_ascii=False) if isinstance(value, list) else value
    return out


def package_versions() -> dict:
    """Return the installed versions of the packages a run depends on."""
    versions = {}
    for package in TRACKED_PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "absent"
    return versions


def git_commit() -> str:
    """Return the current git commit (with '-dirty' when tracked files changed), or 'unknown'."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
        return f"{commit}-dirty" if dirty else commit
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def file_digests(path: str | Path) -> dict:
    """Return {'md5': ..., 'sha256': ...} of one file's bytes (the md5 is the hash DVC records for a file output)."""
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with Path(path).open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            md5.update(block)
            sha256.update(block)
    return {"md5": md5.hexdigest(), "sha256": sha256.hexdigest()}


def tag_file(name: str, path: str | Path) -> dict:
    """Tag the active run with the md5 and SHA-256 of a file it read or wrote ('<name>.md5', '<name>.sha256'); return them."""
    digests = file_digests(path)
    mlflow.set_tags({f"{name}.{kind}": value for kind, value in digests.items()})
    return digests


def run_name(default: str) -> str:
    """Return the DVC experiment's name when `dvc exp run` started this stage (DVC_EXP_NAME), else `default`."""
    return os.environ.get("DVC_EXP_NAME") or default


def start_study_run(cfg: DictConfig, run_name: str, extra_tags: dict):
    """Start and return an MLflow run for the study, tagged and with the resolved config as params."""
    open_store(cfg.mlflow.tracking_uri)
    experiment_id = _experiment_id(cfg.mlflow.experiment_name, experiment_description(cfg))
    commit = git_commit()
    tags = {"study.name": cfg.study.name, "study.sites": ",".join(cfg.study.sites),
            "study.external_sites": ",".join(cfg.study.external_sites), "git.commit": commit,
            "mlflow.source.git.commit": commit.removesuffix("-dirty"),
            **{f"version.{k}": v for k, v in package_versions().items()}, **extra_tags}
    if os.environ.get("DVC_EXP_NAME"):  # the same name in `dvc exp show` and in the MLflow UI
        tags["dvc.experiment"] = os.environ["DVC_EXP_NAME"]
    run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags)
    mlflow.log_params(flatten(shareable(cfg)))  # site-local paths (raw data, keys, records) stay on site
    log.info("MLflow run %s in experiment '%s' at %s", run.info.run_id, cfg.mlflow.experiment_name, mlflow.get_tracking_uri())
    return run


MODEL_ID_TAG = "model.id"  # the run's MLflow logged model: evaluate links its metrics to it, export its files


def log_dataset(name: str, folder: str | Path, sha256: str) -> None:
    """Record the processed data as the active run's MLflow dataset input: its name, digest (the first 32 hex digits
    of the data hash: MLflow keeps 36 characters) and source folder (relative to the project)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():  # a local folder matches MLflow's local-artifact source twice; it says so
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(str(folder))
    dataset = MetaDataset(source=source, name=name, digest=sha256[:32])
    mlflow.log_input(dataset, context="training", tags={"data.sha256": sha256})


def log_trained_model(name: str, model_type: str, checkpoint_sha256: str, metrics: dict) -> str:
    """Create the active run's MLflow logged model (the trained network: the experiment's Models tab), link `metrics`
    to it and tag the run with its id; return the id. Export adds the model's files to it."""
    from mlflow.entities import LoggedModelOutput

    run = mlflow.active_run()
    model = mlflow.initialize_logged_model(name=name, source_run_id=run.info.run_id, model_type=model_type,
                                           tags={"checkpoint.sha256": checkpoint_sha256})
    mlflow.log_metrics(metrics, model_id=model.model_id)
    mlflow.MlflowClient().log_outputs(run.info.run_id, [LoggedModelOutput(model.model_id, step=0)])
    mlflow.finalize_logged_model(model.model_id, "READY")
    mlflow.set_tag(MODEL_ID_TAG, model.model_id)
    return model.model_id


def run_model_id() -> str | None:
    """Return the logged model of the active run (see log_trained_model), or None for a run trained before there was one."""
    return mlflow.get_run(mlflow.active_run().info.run_id).data.tags.get(MODEL_ID_TAG)


def save_run_reference(path: str | Path, run) -> None:
    """Write the run id for later stages (a shortcut, not a DVC output: it differs on every run; see training_run_id)."""
    write_json_atomic(path, {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
                             "tracking_uri": mlflow.get_tracking_uri()})


def training_run_id(reference_file: str | Path, checkpoint_path: str | Path) -> str:
    """Return the MLflow run that trained `checkpoint_path` (tracking URI set): the one named in `reference_file`
    when its checkpoint tag matches the file, else the latest run of the store tagged with the file's SHA-256."""
    checkpoint_path = Path(checkpoint_path)
    if not checkpoint_path.is_file():
        raise InputError(checkpoint_path, "checkpoint not found; run the train stage first")
    sha256 = file_digests(checkpoint_path)["sha256"]
    path = Path(reference_file)
    if path.is_file():
        run_id = json.loads(path.read_text())["run_id"]
        try:
            if mlflow.get_run(run_id).data.tags.get(CHECKPOINT_TAG) == sha256:
                return run_id
        except mlflow.exceptions.MlflowException:
            pass  # a reference from another store (a pulled or copied file): search by content below
    found = mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.`{CHECKPOINT_TAG}` = '{sha256}'",
                               order_by=["attributes.start_time DESC"], max_results=1, output_format="list")
    if not found:
        raise InputError(checkpoint_path, f"no MLflow run at {mlflow.get_tracking_uri()} trained this checkpoint "
                                          f"(SHA-256 {sha256[:12]}); run the train stage")
    return found[0].info.run_id


@contextmanager
def resume_run(reference_file: str | Path, checkpoint_path: str | Path, configured_uri: str):
    """Reopen the training run of `checkpoint_path` (see training_run_id) in the configured store."""
    open_store(configured_uri)
    with mlflow.start_run(run_id=training_run_id(reference_file, checkpoint_path)) as run:
        yield run


class TrackingLost(CrossmedError):
    """The MLflow server stopped answering during a run: says which run, what was kept and how to go on."""


def is_server(uri: str) -> bool:
    """Return whether a tracking URI names an MLflow server (http or https) rather than a local store."""
    return uri.startswith(("http://", "https://"))


def server_answers(uri: str) -> bool:
    """Return whether the tracking store answers: an http(s) server's /health (asked the way MLflow's client asks, with
    its TLS settings such as MLFLOW_TRACKING_SERVER_CERT_PATH), always True for a local store."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    if not is_server(uri):
        return True
    try:
        response = http_request(get_default_host_creds(uri), "/health", "GET", max_retries=0, timeout=10,
                                raise_on_status=False)
        return response.status_code == 200
    except Exception:  # refused, timed out, TLS failure: all mean the server cannot be used
        return False


def is_connection_error(err: BaseException) -> bool:
    """Return whether an exception is MLflow's client failing to reach or use its store (not a training error)."""
    import requests

    return isinstance(err, (mlflow.exceptions.MlflowException, requests.exceptions.RequestException, ConnectionError))


@contextmanager
def environment(values: dict):
    """Set these environment variables in this block (MLflow's client reads its settings there) and restore them after."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def one_try(timeout_s: int = 10):
    """Return a context in which MLflow's HTTP calls try once, for `timeout_s` at most (no retries with back-off)."""
    return environment({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout_s)})


def end_failed_run() -> bool:
    """Mark the active run FAILED; return False when the store cannot be reached (the run then stays RUNNING there)."""
    try:
        with one_try():
            mlflow.end_run(status="FAILED")
        return True
    except Exception as err:  # the store is gone: what the caller reports instead
        log.debug("could not mark the run FAILED: %s", err)
        return False


def tracking_lost(run_id: str, recorded: bool, kept: str, cause: BaseException) -> TrackingLost:
    """Return the error a stage stops with when the tracking server went away during run `run_id`: `recorded` says
    whether the run could still be marked FAILED, `kept` what was saved and how a rerun goes on, `cause` the failed call."""
    uri = mlflow.get_tracking_uri()
    state = ("it is marked FAILED there" if recorded else
             "it could not be marked FAILED and shows RUNNING there until a rerun resumes it or you end it in the UI")
    reason = str(cause).splitlines()[0][:300] if str(cause) else ""
    return TrackingLost(f"the MLflow server at {uri} stopped answering during run {run_id} ({type(cause).__name__}: "
                        f"{reason}): {state}. {kept}")
