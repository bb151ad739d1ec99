"""The first stage's work per data source: synthesize the built-in cohort, or fetch a missing MedMNIST file."""

from pathlib import Path

from crossmed.data.medmnist_fetch import fetch_medmnist
from crossmed.errors import InputError
from crossmed.synthetic.cohort import CohortSpec, write_cohort, write_not_synthesized


def acquire_source(cfg) -> None:
    """Write the synthetic cohort to paths.raw, or a note there (fetching data.path first for MedMNIST when missing)."""
    if cfg.data.source == "synthetic":
        write_cohort(CohortSpec.from_config(cfg.data.synthetic), cfg.paths.raw, cfg.data.key_dir)
        return
    if cfg.data.source == "medmnist" and cfg.data.get("fetch") and not Path(cfg.data.path).is_file():
        fetch_medmnist(str(cfg.data.subset), int(cfg.data.size), cfg.data.path)
    _check_study_input(cfg)  # before paths.raw is touched: a mistyped path leaves the workspace's data as it was
    write_not_synthesized(cfg.paths.raw, cfg.data.source)


def _check_study_input(cfg) -> None:
    """Raise InputError when data.path does not hold what data.source reads (a folder, or a MedMNIST .npz file)."""
    path = Path(str(cfg.data.get("path") or ""))
    wanted = {"folder": ("a folder", Path.is_dir), "medmnist": ("a MedMNIST .npz file", Path.is_file)}.get(str(cfg.data.source))
    if wanted is not None and not wanted[1](path):
        raise InputError(path, f"data.path must name {wanted[0]} for data.source={cfg.data.source}: "
                               f"{'it is not one' if path.exists() else 'not found'}")
