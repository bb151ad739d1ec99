"""Shared fixtures: the repository, a tiny composed config, and a tiny study built stage by stage."""

import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def pytest_collection_modifyitems(config, items):
    """Skip tests marked `gpu` where PyTorch sees no CUDA device."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_ambient_mlflow(monkeypatch):
    """Tests choose their own MLflow store; a tracking URI from the caller's shell must not leak in."""
    import crossmed.tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(crossmed.tracking, "AMBIENT_TRACKING_URI", None)
    monkeypatch.delenv("CROSSMED_DEID_KEY", raising=False)


def tiny_config(root: Path, *overrides: str):
    """Return the smoke-experiment config with every path under `root`."""
    from crossmed.params_file import compose_params

    params = compose_params(REPO / "conf", overrides=["experiment=smoke", *overrides])
    cfg = OmegaConf.create(params)
    for key in ("raw", "site", "deidentified", "processed", "models", "experiments"):
        cfg.paths[key] = str(root / key)
    if cfg.data.source == "synthetic":  # other sources keep their keys beside their data
        cfg.data.key_dir = cfg.deid.key_dir = str(root / "site" / "keys")
    cfg.deid.site_records = str(root / "site" / "records")
    cfg.mlflow.tracking_uri = f"sqlite:///{root / 'experiments' / 'mlflow.db'}"
    return cfg


def run_stages(cfg, through: str = "report"):
    """Run the stages after synthesize by the library, as DVC would, up to and including `through`."""
    from crossmed.data.preprocess import preprocess_study
    from crossmed.deid.study import deidentify_source
    from crossmed.evaluation.study import evaluate_study
    from crossmed.evaluation.report_stage import report_study
    from crossmed.export.study import export_study
    from crossmed.training.study import train_study

    exp, checkpoint = Path(cfg.paths.experiments), f"{cfg.paths.models}/checkpoint.pt"
    steps = [("deidentify", lambda: deidentify_source(cfg)),
             ("preprocess", lambda: preprocess_study(cfg, cfg.paths.deidentified, cfg.paths.processed)),
             ("train", lambda: train_study(cfg, checkpoint, exp / "train/history.csv", exp / "train/mlflow_run.json")),
             ("evaluate", lambda: evaluate_study(cfg, checkpoint, exp / "train/mlflow_run.json", exp / "metrics.json",
                                                 exp / "evaluation")),
             ("export", lambda: export_study(cfg, checkpoint, exp / "train/mlflow_run.json", cfg.paths.models)),
             ("report", lambda: report_study(cfg, checkpoint, exp / "train/mlflow_run.json", exp / "reports"))]
    for name, step in steps:
        step()
        if name == through:
            return


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """A tiny study run through synthesize -> deidentify -> preprocess by the library; returns its config."""
    from crossmed.data.preprocess import preprocess_study
    from crossmed.deid.study import deidentify_study
    from crossmed.synthetic.cohort import CohortSpec, write_cohort

    root = tmp_path_factory.mktemp("study")
    cfg = tiny_config(root)
    write_cohort(CohortSpec.from_config(cfg.data.synthetic), cfg.paths.raw, cfg.deid.key_dir)
    deidentify_study(cfg.paths.raw, cfg.paths.deidentified, list(cfg.study.sites), cfg.deid)
    preprocess_study(cfg, cfg.paths.deidentified, cfg.paths.processed)
    return cfg


@pytest.fixture(scope="session")
def trained_study(tiny_study, tmp_path_factory):
    """The tiny study after train -> evaluate -> export, with a real sqlite MLflow store."""
    from crossmed.evaluation.study import evaluate_study
    from crossmed.export.study import export_study
    from crossmed.training.study import train_study

    cfg = tiny_study
    exp = Path(cfg.paths.experiments)
    train_study(cfg, f"{cfg.paths.models}/checkpoint.pt", exp / "train/history.csv", exp / "train/mlflow_run.json")
    evaluate_study(cfg, f"{cfg.paths.models}/checkpoint.pt", exp / "train/mlflow_run.json", exp / "metrics.json", exp / "evaluation")
    export_study(cfg, f"{cfg.paths.models}/checkpoint.pt", exp / "train/mlflow_run.json", cfg.paths.models)
    return cfg


@pytest.fixture
def copy_of(tmp_path):
    """Return a function that copies a folder into this test's tmp_path (fixtures stay untouched)."""
    def _copy(folder, name=None):
        target = tmp_path / (name or Path(folder).name)
        shutil.copytree(folder, target)
        return target
    return _copy
