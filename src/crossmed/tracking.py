"""MLflow runs for a study: the store, the run shared by train/evaluate/export, and its tags."""

import json
import logging
import os
import subprocess
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import mlflow
import yaml
from omegaconf import DictConfig, OmegaConf

from crossmed.errors import InputError
from crossmed.files import write_json_atomic
from crossmed.shareable_config import shareable

log = logging.getLogger("crossmed.tracking")
TRACKED_PACKAGES = ["crossmed", "torch", "monai", "mlflow", "dvc", "hydra-core", "pydicom", "numpy", "scikit-learn", "onnx", "onnxruntime"]
ARTIFACT_DIR_NAME = "mlartifacts"


def tracking_uri(configured: str) -> str:
    """Return $MLFLOW_TRACKING_URI when set, else the configured URI.

    A relative sqlite path is taken from the DVC project's root when DVC names it (DVC_ROOT): queued
    experiments run in copies under .dvc/tmp/exps and must still record into the project's one store.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
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
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri.removeprefix("sqlite:///"))
    return (database.parent.resolve() / ARTIFACT_DIR_NAME).as_uri()


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


def dvc_data_hashes(lock_file: str | Path = "dvc.lock") -> dict:
    """Return the DVC hash of every stage output recorded in dvc.lock so far ({'dvc.<path>': md5})."""
    path = Path(lock_file)
    if not path.is_file():
        return {}
    lock = yaml.safe_load(path.read_text()) or {}
    hashes = {}
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs", []):
            hashes[f"dvc.{out['path']}"] = out.get("md5", "")
    return hashes


def run_name(default: str) -> str:
    """Return the DVC experiment's name when `dvc exp run` started this stage (DVC_EXP_NAME), else `default`."""
    return os.environ.get("DVC_EXP_NAME") or default


def start_study_run(cfg: DictConfig, run_name: str, extra_tags: dict):
    """Start and return an MLflow run for the study, tagged and with the resolved config as params."""
    mlflow.set_tracking_uri(tracking_uri(cfg.mlflow.tracking_uri))
    experiment_id = _experiment_id(cfg.mlflow.experiment_name)
    commit = git_commit()
    tags = {"crossmed.study": cfg.study.name, "crossmed.sites": ",".join(cfg.study.sites),
            "crossmed.external_sites": ",".join(cfg.study.external_sites), "git.commit": commit,
            "mlflow.source.git.commit": commit.removesuffix("-dirty"),
            **{f"version.{k}": v for k, v in package_versions().items()}, **dvc_data_hashes(), **extra_tags}
    if os.environ.get("DVC_EXP_NAME"):  # the same name in `dvc exp show` and in the MLflow UI
        tags["dvc.experiment"] = os.environ["DVC_EXP_NAME"]
    run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags)
    mlflow.log_params(flatten(shareable(cfg)))  # site-local paths (raw data, keys, records) stay on site
    log.info("MLflow run %s in experiment '%s' at %s", run.info.run_id, cfg.mlflow.experiment_name, mlflow.get_tracking_uri())
    return run


def save_run_reference(path: str | Path, run) -> None:
    """Write the run id and tracking URI so later stages log into the same run."""
    write_json_atomic(path, {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
                             "tracking_uri": mlflow.get_tracking_uri()})


def run_provenance(run_id: str) -> dict:
    """Return what identifies a training run: its ID, start time (UTC) and the code commit it ran (tracking URI set)."""
    run = mlflow.get_run(run_id)
    started = datetime.fromtimestamp(run.info.start_time / 1000, tz=timezone.utc)
    return {"run_id": run_id, "started": f"{started:%Y-%m-%d %H:%M} UTC", "git_commit": run.data.tags.get("git.commit", "unknown")}


@contextmanager
def resume_run(reference_file: str | Path):
    """Reopen the training run named in `reference_file` (written by the train stage)."""
    path = Path(reference_file)
    if not path.is_file():
        raise InputError(path, "no MLflow run reference; run the train stage first")
    reference = json.loads(path.read_text())
    mlflow.set_tracking_uri(reference["tracking_uri"])
    with mlflow.start_run(run_id=reference["run_id"]) as run:
        yield run
