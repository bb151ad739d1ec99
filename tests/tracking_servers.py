"""The shared tracking set-up (`crossmed tracking up`) for tests: started in a temporary home, stopped and deleted after."""

import json
import os
import subprocess
import sys
from pathlib import Path

from crossmed.shared_tracking.accounts import read_credentials
from crossmed.shared_tracking.postgres import PostgresError, server_binaries

CROSSMED = [sys.executable, "-m", "crossmed.cli"]


def postgres_installed() -> bool:
    """Return whether PostgreSQL's server programs are here (scripts/bootstrap.sh test installs them)."""
    try:
        server_binaries()
        return True
    except PostgresError:
        return False


NO_POSTGRES = "PostgreSQL's server is not installed (scripts/bootstrap.sh test installs it)"


def tracking_cli(home: Path, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run `crossmed tracking --home HOME ...` in a new process; fail with its output unless it exits 0 (check)."""
    result = subprocess.run([*CROSSMED, "tracking", "--home", str(home), *args], capture_output=True, text=True,
                            timeout=300, env={**os.environ, **(env or {})})
    if check:
        assert result.returncode == 0, f"crossmed tracking {' '.join(args)}:\n{result.stdout}\n{result.stderr[-3000:]}"
    return result


class Stack:
    """A running set-up: its home, state (ports, processes) and the credentials of its users."""

    def __init__(self, home: Path):
        self.home = home
        self.up_output = tracking_cli(home, "up", "--port", "0")

    @property
    def state(self) -> dict:
        return json.loads((self.home / "state.json").read_text())

    @property
    def uri(self) -> str:
        return self.state["tracking_uri"]

    @property
    def admin(self) -> tuple[str, str]:
        return "admin", (self.home / "secrets" / "admin-password").read_text().strip()

    def add_user(self, name: str) -> dict:
        """Create a user with the CLI; return its credentials (MLFLOW_TRACKING_* variables)."""
        tracking_cli(self.home, "user", "add", name)
        return read_credentials(self.home / "secrets" / "users" / f"{name}.env")

    def status(self) -> dict:
        return json.loads(tracking_cli(self.home, "status", "--json", check=False).stdout)

    def down(self, *args: str) -> None:
        tracking_cli(self.home, "down", *args)
