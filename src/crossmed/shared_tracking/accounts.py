"""Accounts on the shared MLflow server: a user per site, permissions per experiment and registered model, and the
credentials file a site's team sources (MLFLOW_TRACKING_URI, _USERNAME, _PASSWORD). Admin calls use MLflow's own
AuthServiceClient with the admin password kept in the tracking home."""

import re
import secrets
from pathlib import Path

from crossmed.errors import CrossmedError
from crossmed.shared_tracking.home import TrackingHome, write_private
from crossmed.shared_tracking.mlflow_server import ADMIN

PERMISSIONS = ("READ", "USE", "EDIT", "MANAGE", "NO_PERMISSIONS")
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
CREDENTIAL_KEYS = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


class AccountError(CrossmedError):
    """A user, experiment or model that cannot be created or granted: says which and why."""


def signed_in(username: str, password: str):
    """Return a context in which MLflow client calls go as `username` (MLflow reads credentials from the environment)."""
    from crossmed.tracking import environment

    return environment({"MLFLOW_TRACKING_USERNAME": username, "MLFLOW_TRACKING_PASSWORD": password})


def as_admin(home: TrackingHome):
    """Return a context in which MLflow client calls are the admin's."""
    return signed_in(ADMIN, home.secret("admin-password"))


def credentials_file(home: TrackingHome, username: str) -> Path:
    """Return where a user's credentials file lives (secrets/users/<name>.env, 0600)."""
    return home.secrets / "users" / f"{username}.env"


def read_credentials(path: str | Path) -> dict:
    """Return the KEY=value lines of a credentials file as a dict (the keys of CREDENTIAL_KEYS)."""
    values = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        if key in CREDENTIAL_KEYS:
            values[key] = value.strip().strip("'\"")
    return values


def auth_client(tracking_uri: str):
    """Return MLflow's AuthServiceClient for the server (imported quietly: it loads the server's web app)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mlflow.server.auth.client import AuthServiceClient
    return AuthServiceClient(tracking_uri)


def add_user(home: TrackingHome, tracking_uri: str, username: str) -> Path:
    """Create a user with a new random password; write and return its credentials file (the password goes nowhere else)."""
    from mlflow.exceptions import RestException

    if not USER_NAME.fullmatch(username) or username == ADMIN:
        raise AccountError(f"user name '{username}': letters, digits, '.', '_' or '-', not '{ADMIN}'")
    password = secrets.token_urlsafe(24)
    with as_admin(home):
        try:
            auth_client(tracking_uri).create_user(username, password)
        except RestException as err:
            if err.error_code == "RESOURCE_ALREADY_EXISTS":
                raise AccountError(f"user '{username}' exists at {tracking_uri} (its credentials: "
                                   f"{credentials_file(home, username)})") from err
            raise AccountError(f"user '{username}' at {tracking_uri}: {err.message}") from err
    path = credentials_file(home, username)
    write_private(path, "".join(f"export {key}={value}\n" for key, value in
                                zip(CREDENTIAL_KEYS, (tracking_uri, username, password))))
    return path


def _experiment_id(tracking_uri: str, name: str, create: bool) -> str:
    """Return the id of experiment `name` (admin's view), creating it as a model-training experiment if asked."""
    import mlflow

    from crossmed.tracking import EXPERIMENT_KIND

    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    if not create:
        raise AccountError(f"no experiment '{name}' at {tracking_uri} (add --create to make it)")
    return client.create_experiment(name, tags=EXPERIMENT_KIND)


def grant(home: TrackingHome, tracking_uri: str, username: str, permission: str, *, experiment: str | None = None,
          model: str | None = None, create: bool = False) -> str:
    """Give `username` a permission on an experiment or a registered model (by name); return the resource id."""
    from mlflow.exceptions import MlflowException

    if permission not in PERMISSIONS:
        raise AccountError(f"permission '{permission}': one of {', '.join(PERMISSIONS)}")
    if (experiment is None) == (model is None):
        raise AccountError("name one experiment or one registered model")
    with as_admin(home):
        try:
            if experiment is not None:
                kind, resource = "experiment", _experiment_id(tracking_uri, experiment, create)
            else:
                kind, resource = "registered_model", model
            auth_client(tracking_uri).grant_user_permission(username, kind, resource, permission)
        except MlflowException as err:
            raise AccountError(f"{permission} for '{username}' on {kind} '{experiment or model}': {err.message}") from err
    return resource
