"""The folder where `crossmed tracking` keeps its settings, process ids, logs and secrets (owner-only files)."""

import json
import os
import secrets
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from crossmed.files import write_json_atomic

HOME_ENV = "CROSSMED_TRACKING_HOME"
DEFAULT_HOME = "~/.local/state/crossmed/tracking"  # outside any checkout: nothing here can be committed or pushed


def default_home() -> Path:
    """Return $CROSSMED_TRACKING_HOME, else ~/.local/state/crossmed/tracking."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only (0600 from the moment it exists), replacing it whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.replace(partial, path)


@dataclass(frozen=True)
class TrackingHome:
    """The tracking set-up's folder: state.json (ports, process ids; no secrets), logs/, secrets/ (0700)."""

    root: Path

    @property
    def state_file(self) -> Path:
        """Ports, addresses and process ids of the set-up (no secrets)."""
        return self.root / "state.json"

    @property
    def logs(self) -> Path:
        """The servers' log files (MLflow, S3)."""
        return self.root / "logs"

    @property
    def secrets(self) -> Path:
        """Passwords, keys and the files that hold them (0700 folder, 0600 files)."""
        return self.root / "secrets"

    def create(self) -> "TrackingHome":
        """Make the folder (owner-only: logs and the bucket copy hold study data) and its secrets/ folder; return self."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        self.logs.mkdir(exist_ok=True)
        self.secrets.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.secrets, 0o700)
        return self

    @contextmanager
    def locked(self):
        """Hold the home's lock file in this block, so two `up`/`down` commands never work on it at once."""
        import fcntl

        self.create()
        with (self.root / "lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield self
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def delete(self) -> None:
        """Remove what crossmed keeps here (state, logs, secrets, the bucket copy, the lock), then the folder if empty."""
        import shutil

        for name in ("state.json", "logs", "secrets", "bucket", "bucket.partial", "lock"):
            path = self.root / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        if self.root.is_dir() and not any(self.root.iterdir()):
            self.root.rmdir()

    def secret(self, name: str) -> str:
        """Return the secret kept in secrets/<name>, generating a random one (192 bits) the first time."""
        path = self.secrets / name
        if not path.is_file():
            write_private(path, secrets.token_urlsafe(24))
        return path.read_text(encoding="utf-8").strip()

    def load_state(self) -> dict:
        """Return what state.json holds ({} before the first `up`)."""
        return json.loads(self.state_file.read_text()) if self.state_file.is_file() else {}

    def save_state(self, state: dict) -> None:
        """Replace state.json (ports, addresses, process ids)."""
        write_json_atomic(self.state_file, state)
