"""Shared fixtures: the repository, a tiny composed config, and a tiny study built stage by stage."""

import shutil
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


# The longest test files, longest first (minutes on the 2-core CI machine), so that with two xdist workers
# (--dist loadfile --no-loadscope-reorder, scripts/bootstrap.sh) the short files fill in around them instead of the
# 15-minute e2e file starting last and running alone (xdist's own order is by test count). The first two slow each
# other down while they run together (both start many processes): 23 min of pytest on CI; in xdist's order the
# e2e file was still running after 24 min.
LONGEST_FILES_FIRST = ("test_pipeline_e2e.py", "test_federated.py", "test_mlflow_store.py", "test_reproducibility.py",
                       "test_export_predict.py", "test_resume.py")


def pytest_collection_modifyitems(config, items):
    """Put the longest files first (the order within a file kept) and skip tests marked `gpu` where PyTorch sees no CUDA device."""
    import torch

    rank = {name: i for i, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their collected order
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
    """Return the smoke-experiment config with every path under `root` (root/raw, root/models, ...)."""
    from crossmed.params_file import compose_params
    from crossmed.study_paths import folder_overrides

    cfg = OmegaConf.create(compose_params(REPO / "conf", overrides=["experiment=smoke", *folder_overrides(root), *overrides]))
    cfg.mlflow.tracking_uri = f"sqlite:///{root / 'experiments' / 'mlflow.db'}"
    return cfg


STAGES = tuple(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])  # in pipeline order, as dvc.yaml lists them


def run_stages(cfg, through: str = "report", first: str = "deidentify"):
    """Run the stages from `first` through `through` by the library (crossmed.stages.<name>.run), as DVC would."""
    import importlib

    for name in STAGES[STAGES.index(first):STAGES.index(through) + 1]:
        importlib.import_module(f"crossmed.stages.{name}").run(cfg)


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """A tiny study run through synthesize -> deidentify -> preprocess by the library; returns its config."""
    cfg = tiny_config(tmp_path_factory.mktemp("study"))
    run_stages(cfg, first="synthesize", through="preprocess")
    return cfg


@pytest.fixture(scope="session")
def trained_study(tiny_study, tmp_path_factory):
    """The tiny study after train -> evaluate -> export, with a real sqlite MLflow store."""
    run_stages(tiny_study, first="train", through="export")
    return tiny_study


@pytest.fixture
def copy_of(tmp_path):
    """Return a function that copies a folder into this test's tmp_path (fixtures stay untouched)."""
    def _copy(folder, name=None):
        target = tmp_path / (name or Path(folder).name)
        shutil.copytree(folder, target)
        return target
    return _copy
