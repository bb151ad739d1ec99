"""MLflow runs for a study: the store, the run shared by train/evaluate/export, and its tags."""

import hashlib
import json
import logging
import os
import subprocess
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import mlflow
from omegaconf import DictConfig, OmegaConf

from crossmed.errors import InputError
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


def _experiment_id(name: str) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow.create_experiment(name, artifact_location=local_artifact_location(mlflow.get_tracking_uri()))


def local_artifact_location(uri: str) -> str | None:
    """Return the artifact folder beside a local sqlite store (as a file URI), or None to let a server decide."""
    database = local_database(uri)
    return artifact_root(database) if database is not None else None


def open_store(configured: str) -> str:
    """Set the tracking URI (see tracking_uri) and, for a local store that was moved or copied, relocate its artifact
    locations to the folder beside it; return the URI."""
    uri = tracking_uri(configured)
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
    experiment_id = _experiment_id(cfg.mlflow.experiment_name)
    commit = git_commit()
    tags = {"crossmed.study": cfg.study.name, "crossmed.sites": ",".join(cfg.study.sites),
            "crossmed.external_sites": ",".join(cfg.study.external_sites), "git.commit": commit,
            "mlflow.source.git.commit": commit.removesuffix("-dirty"),
            **{f"version.{k}": v for k, v in package_versions().items()}, **extra_tags}
    if os.environ.get("DVC_EXP_NAME"):  # the same name in `dvc exp show` and in the MLflow UI
        tags["dvc.experiment"] = os.environ["DVC_EXP_NAME"]
    run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags)
    mlflow.log_params(flatten(shareable(cfg)))  # site-local paths (raw data, keys, records) stay on site
    log.info("MLflow run %s in experiment '%s' at %s", run.info.run_id, cfg.mlflow.experiment_name, mlflow.get_tracking_uri())
    return run


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
