"""Stage `synthesize`: what data.source brings before de-identification, in paths.raw.

The built-in cohort for data.source=synthetic; otherwise data.path is checked (MedMNIST fetched first when asked)
and paths.raw holds a note.
"""

from crossmed.sources import get_source


def run(cfg) -> None:
    """Acquire data.source's raw data into paths.raw (crossmed.sources.<source>.SOURCE.acquire)."""
    get_source(cfg.data.source).acquire(cfg)
