"""The S3-compatible store that holds MLflow's artifacts and the DVC remote: moto's server on 127.0.0.1 for trials and
tests (kept in memory, so `down` saves the bucket to a folder and `up` puts it back), or any S3 endpoint by settings."""

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from crossmed.errors import CrossmedError
from crossmed.shared_tracking import daemons
from crossmed.shared_tracking.home import TrackingHome

log = logging.getLogger("crossmed.tracking")
MLFLOW_PREFIX, DVC_PREFIX = "mlartifacts", "dvc"
START_TIMEOUT_S = 30


class ObjectStoreError(CrossmedError):
    """The S3 store cannot be reached or used: says which endpoint and why."""


@dataclass(frozen=True)
class S3Store:
    """Where artifacts go: endpoint, bucket, region and the key pair that opens it (never written to state.json)."""

    endpoint_url: str
    bucket: str
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"

    @property
    def mlflow_destination(self) -> str:
        """Where MLflow's artifact proxy writes (mlflow server --artifacts-destination)."""
        return f"s3://{self.bucket}/{MLFLOW_PREFIX}"

    @property
    def dvc_url(self) -> str:
        """The DVC remote's URL."""
        return f"s3://{self.bucket}/{DVC_PREFIX}"

    def env(self) -> dict:
        """Return the environment boto3 (MLflow's artifact proxy) reads to reach this store."""
        return {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
                "AWS_DEFAULT_REGION": self.region, "MLFLOW_S3_ENDPOINT_URL": self.endpoint_url}

    def client(self):
        """Return a boto3 S3 client for this store."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region,
                            aws_access_key_id=self.access_key_id, aws_secret_access_key=self.secret_access_key)

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists; a store that cannot be reached is an ObjectStoreError."""
        import botocore.exceptions

        client = self.client()
        try:
            client.head_bucket(Bucket=self.bucket)
            return
        except botocore.exceptions.ClientError as err:
            if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise ObjectStoreError(f"S3 bucket '{self.bucket}' at {self.endpoint_url}: {err}") from err
        except botocore.exceptions.BotoCoreError as err:
            raise ObjectStoreError(f"S3 store at {self.endpoint_url} cannot be reached: {err}") from err
        client.create_bucket(Bucket=self.bucket)
        log.info("created bucket s3://%s at %s", self.bucket, self.endpoint_url)

    def objects(self, prefix: str = ""):
        """Yield the key of every object in the bucket under `prefix`."""
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]


def trial_store(home: TrackingHome, port: int, bucket: str) -> S3Store:
    """Return the moto store of a tracking home (its key pair generated once, kept in secrets/)."""
    return S3Store(f"http://127.0.0.1:{port}", bucket, f"crossmed-{home.secret('s3-access-key-id')[:12]}",
                   home.secret("s3-secret-access-key"))


def start_moto(home: TrackingHome, port: int) -> dict:
    """Start moto's S3 server on 127.0.0.1:port; return its process record once it answers. moto checks no keys:
    anyone who can reach the port reads and changes the bucket, so it is for a single-user machine only."""
    from crossmed.ports import listening

    return daemons.start_server("moto's S3 server", port, [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                                           "-p", str(port)], home.logs / "s3.log",
                                {**os.environ, "PYTHONUNBUFFERED": "1"}, lambda: listening(port), START_TIMEOUT_S)


def save_bucket(store: S3Store, folder: Path) -> int:
    """Copy every object of the bucket into `folder` (replacing what it held, once all are copied); return how many."""
    import shutil

    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    client, count = store.client(), 0
    for key in store.objects():
        if key.endswith("/"):  # a folder marker some clients write: nothing to copy
            continue
        if key.startswith("/") or ".." in key.split("/"):
            log.warning("s3://%s/%s: a key that would point outside the copy; not saved", store.bucket, key)
            continue
        target = partial / key
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(store.bucket, key, str(target))
        count += 1
    partial.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return count


def restore_bucket(store: S3Store, folder: Path) -> int:
    """Upload every file under `folder` to the bucket under its relative path; return how many."""
    client, count = store.client(), 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []:
        client.upload_file(str(path), store.bucket, path.relative_to(folder).as_posix())
        count += 1
    return count
