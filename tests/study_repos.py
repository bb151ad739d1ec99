"""A copy of the project in a new git repository, as a team member's clone: for tests that run DVC end to end."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO

GIT = ["git", "-c", "user.name=crossmed-test", "-c", "user.email=test@crossmed.invalid"]


def sh(args, cwd, timeout=900, env: dict | None = None) -> str:
    """Run a command with this environment's bin folder first on PATH; fail with its output unless it exits 0."""
    full_env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    if not env or "MLFLOW_TRACKING_URI" not in env:
        full_env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def smoke_study_repo(repo: Path) -> Path:
    """Copy the project's tracked files to `repo`, compose params.yaml for the smoke experiment and commit it all."""
    from dvc.utils.hydra import compose_and_dump

    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, repo / name)
    compose_and_dump(repo / "params.yaml", str(repo / "conf"), None, "config", str(repo), ["experiment=smoke"])
    sh(["git", "init", "-q", "-b", "main"], repo)
    sh([*GIT, "add", "-A"], repo)
    sh([*GIT, "commit", "-q", "-m", "smoke study"], repo)
    return repo
