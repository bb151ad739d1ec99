"""The first stage's work per data source: synthesize the built-in cohort, or fetch a missing MedMNIST file."""

from pathlib import Path

from crossmed.data.medmnist_fetch import fetch_medmnist
from crossmed.synthetic.cohort import CohortSpec, write_cohort, write_not_synthesized


def acquire_source(cfg) -> None:
    """Write the synthetic cohort to paths.raw, or a note there (fetching data.path first for MedMNIST when missing)."""
    if cfg.data.source == "synthetic":
        write_cohort(CohortSpec.from_config(cfg.data.synthetic), cfg.paths.raw, cfg.data.key_dir)
        return
    if cfg.data.source == "medmnist" and cfg.data.get("fetch") and not Path(cfg.data.path).is_file():
        fetch_medmnist(str(cfg.data.subset), int(cfg.data.size), cfg.data.path)
    write_not_synthesized(cfg.paths.raw, cfg.data.source)
