"""The crossmed package as it travels inside an exported model: everything inference needs, nothing it does not.

The synthetic-cohort generator stays behind: a model has no use for it, and its lists of fictitious
names and staff read like PHI to any leak scanner a hospital runs over what it receives.
"""

import shutil
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # src/crossmed
LEFT_BEHIND = ("__pycache__", "*.pyc", "synthetic")


def copy_package(target: Path) -> Path:
    """Copy the crossmed package to `target` (a folder named crossmed), without what models never use; return it."""
    shutil.copytree(PACKAGE_DIR, target, ignore=shutil.ignore_patterns(*LEFT_BEHIND))
    return target
