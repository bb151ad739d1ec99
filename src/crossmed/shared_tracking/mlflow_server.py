"""The MLflow tracking server of the shared set-up: `mlflow server --app-name basic-auth` on PostgreSQL, artifacts
through its proxy into the S3 store, every secret passed in files or the environment, never on a command line."""

import logging
import os
import sys
from pathlib import Path

from crossmed.shared_tracking import daemons
from crossmed.shared_tracking.home import TrackingHome, write_private
from crossmed.shared_tracking.object_store import S3Store
from crossmed.shared_tracking.postgres import AUTH_DB, TRACKING_DB, Postgres

log = logging.getLogger("crossmed.tracking")
ADMIN = "admin"
START_TIMEOUT_S = 90
WORKERS = 2
AUTH_CACHE_S = 30
AUTH_FUNCTION = "mlflow.server.auth:authenticate_request_basic_auth"


def auth_config(home: TrackingHome, postgres: Postgres) -> Path:
    """Write MLflow's basic-auth settings (secrets/basic_auth.ini, 0600): nobody reads what they were not granted."""
    path = home.secrets / "basic_auth.ini"
    write_private(path, "\n".join([
        "[mlflow]",
        "default_permission = NO_PERMISSIONS",
        f"database_uri = {postgres.uri(AUTH_DB)}",
        f"admin_username = {ADMIN}",
        f"authorization_function = {AUTH_FUNCTION}",
        "grant_default_workspace_access = false",
        # A verified password is remembered this long per worker: each request otherwise re-derives the scrypt hash
        # (about 0.1 s of CPU). A changed or deleted password still works on the other worker for up to this long.
        f"auth_cache_ttl_seconds = {AUTH_CACHE_S}", ""]))
    return path


def server_env(home: TrackingHome, postgres: Postgres, store: S3Store, passfile: Path) -> dict:
    """Return the server's environment: store URIs without passwords, libpq's password file, the S3 key pair."""
    return {**os.environ, **store.env(),
            "MLFLOW_AUTH_CONFIG_PATH": str(auth_config(home, postgres)),
            "MLFLOW_AUTH_ADMIN_PASSWORD": home.secret("admin-password"),  # used once, to create the admin user
            "MLFLOW_FLASK_SERVER_SECRET_KEY": home.secret("flask-secret-key"),  # the same in every worker
            "MLFLOW_BACKEND_STORE_URI": postgres.uri(TRACKING_DB),
            "PGPASSFILE": str(passfile), "PYTHONUNBUFFERED": "1",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # GenAI scoring jobs: a job runner crossmed does not use


def start(home: TrackingHome, port: int, env: dict, destination: str) -> dict:
    """Start the server on 127.0.0.1:port and wait for /health; return its process record."""
    uri = f"http://127.0.0.1:{port}"
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    return daemons.start_server("the MLflow server", port, [
        str(mlflow_cli), "server", "--app-name", "basic-auth", "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(WORKERS), "--artifacts-destination", destination], home.logs / "mlflow.log", env,
        lambda: healthy(uri), START_TIMEOUT_S)


def healthy(uri: str) -> bool:
    """Return whether an MLflow server answers /health at `uri` (crossmed.tracking.server_answers)."""
    from crossmed.tracking import server_answers

    return bool(uri) and server_answers(uri)
