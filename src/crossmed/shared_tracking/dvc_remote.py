"""The team's DVC remote on the shared S3 store, written to the project's .dvc/config.local (git-ignored by DVC):
the address, endpoint and keys stay on this machine and out of every commit."""

import os
from pathlib import Path

from crossmed.errors import CrossmedError
from crossmed.shared_tracking.object_store import S3Store

REMOTE = "shared"


def configure(project: str | Path, store: S3Store, name: str = REMOTE, default: bool = True,
              with_keys: bool = True) -> Path:
    """Add (or replace) remote `name` = the store's dvc/ prefix in the project's local DVC config (0600); return that
    file. Without `with_keys`, DVC takes the keys from the environment or an AWS profile when it runs."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        repo = Repo(str(project))
    except NotDvcRepoError as err:
        raise CrossmedError(f"{project}: not a DVC project ({err})") from err
    with repo.config.edit("local") as config:
        remote = {"url": store.dvc_url, "endpointurl": store.endpoint_url, "region": store.region}
        if with_keys:
            remote.update(access_key_id=store.access_key_id, secret_access_key=store.secret_access_key)
        config["remote"][name] = remote
        if default:
            config["core"]["remote"] = name
    repo.close()
    path = Path(repo.dvc_dir) / "config.local"
    os.chmod(path, 0o600)
    return path
