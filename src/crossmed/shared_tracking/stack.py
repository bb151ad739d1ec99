"""`crossmed tracking up / down / status`: the three servers of the shared set-up, started and stopped together."""

import logging
import os
import time
from dataclasses import dataclass

from crossmed.ports import free_port, listening
from crossmed.shared_tracking import daemons, mlflow_server, object_store
from crossmed.shared_tracking.home import TrackingHome
from crossmed.shared_tracking.object_store import S3Store
from crossmed.shared_tracking.postgres import Postgres

log = logging.getLogger("crossmed.tracking")
DEFAULT_MLFLOW_PORT = 5050  # `crossmed ui` (the local store) keeps 5000
BUCKET = "crossmed"
EXTERNAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


@dataclass(frozen=True)
class Options:
    """How to start the set-up: MLflow's port, and an S3 endpoint to use instead of moto (its keys from the env)."""

    mlflow_port: int = DEFAULT_MLFLOW_PORT
    s3_endpoint: str | None = None
    bucket: str = BUCKET


def _port(state: dict, name: str, wanted: int | None = None) -> int:
    """Return the port a server had before (kept so addresses stay the same), else `wanted`, else a free one."""
    return state.get("ports", {}).get(name) or wanted or free_port()


def s3_store(home: TrackingHome, state: dict) -> S3Store:
    """Return the set-up's S3 store: moto's (keys in secrets/) or the configured endpoint (keys from the env)."""
    if state["s3"]["managed"]:
        return object_store.trial_store(home, state["ports"]["s3"], state["s3"]["bucket"])
    missing = [key for key in EXTERNAL_KEYS if not os.environ.get(key)]
    if missing:
        raise object_store.ObjectStoreError(f"S3 endpoint {state['s3']['endpoint_url']}: set {', '.join(missing)} "
                                             "in the environment (crossmed does not store a real store's keys)")
    return S3Store(state["s3"]["endpoint_url"], state["s3"]["bucket"], os.environ["AWS_ACCESS_KEY_ID"],
                   os.environ["AWS_SECRET_ACCESS_KEY"], os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))


def up(home: TrackingHome, options: Options = Options()) -> dict:
    """Start PostgreSQL, the S3 store (moto unless an endpoint is given) and MLflow with basic auth; return the state."""
    with home.locked():
        return _up(home, options)


def _up(home: TrackingHome, options: Options) -> dict:
    began = time.monotonic()
    state = home.load_state()
    if "s3" not in state:
        state["s3"] = {"managed": options.s3_endpoint is None, "bucket": options.bucket,
                       "endpoint_url": options.s3_endpoint}
    elif (options.s3_endpoint, options.bucket) != (state["s3"]["endpoint_url"], state["s3"]["bucket"]):
        log.warning("this set-up keeps the S3 store of its first start (%s, bucket %s); --s3-endpoint and --bucket "
                    "are ignored (a new store: a new --home)", state["s3"]["endpoint_url"] or "moto",
                    state["s3"]["bucket"])
    state["ports"] = {"postgres": _port(state, "postgres"), "mlflow": _port(state, "mlflow", options.mlflow_port),
                      **({"s3": _port(state, "s3")} if state["s3"]["managed"] else {})}
    processes = state.setdefault("processes", {})
    home.save_state(state)  # ports first: a failed start can still be stopped by `down`
    postgres = Postgres.for_home(home, state["ports"]["postgres"])
    if not postgres.initialised():
        postgres.init()
    postgres.port = postgres.running_port() or postgres.port  # a server left running keeps its port
    state["ports"]["postgres"] = postgres.port
    if not postgres.running():
        postgres.start()
    password = home.secret("postgres-password")
    postgres.ensure_databases(password)
    passfile = postgres.passfile(home, password)
    timings = {"postgres_s": round(time.monotonic() - began, 2)}

    fresh_moto = state["s3"]["managed"] and not daemons.alive(processes.get("s3"))
    if fresh_moto:
        log.warning("moto's S3 server checks no keys: anyone who can reach 127.0.0.1:%d reads and changes the bucket. "
                    "Use it on a single-user machine; for anything shared, --s3-endpoint (MinIO, a cloud bucket)",
                    state["ports"]["s3"])
        processes["s3"] = object_store.start_moto(home, state["ports"]["s3"])
        home.save_state(state)
    store = s3_store(home, state)
    store.ensure_bucket()
    if fresh_moto and (home.root / "bucket").is_dir():  # moto starts empty: put back what `down` saved
        restored = object_store.restore_bucket(store, home.root / "bucket")
        log.info("restored %d object(s) into s3://%s from %s", restored, store.bucket, home.root / "bucket")
    timings["s3_s"] = round(time.monotonic() - began - sum(timings.values()), 2)

    if not daemons.alive(processes.get("mlflow")):
        env = mlflow_server.server_env(home, postgres, store, passfile)
        processes["mlflow"] = mlflow_server.start(home, state["ports"]["mlflow"], env, store.mlflow_destination)
    state["tracking_uri"] = f"http://127.0.0.1:{state['ports']['mlflow']}"
    timings["mlflow_s"] = round(time.monotonic() - began - sum(timings.values()), 2)
    state["startup"] = {**timings, "total_s": round(time.monotonic() - began, 2)}
    home.save_state(state)
    log.info("shared tracking up in %.1f s: MLflow %s (admin password in %s), PostgreSQL 127.0.0.1:%d, S3 %s bucket %s",
             state["startup"]["total_s"], state["tracking_uri"], home.secrets / "admin-password",
             state["ports"]["postgres"], store.endpoint_url, store.bucket)
    return state


def down(home: TrackingHome, delete_data: bool = False) -> None:
    """Stop MLflow, save moto's bucket to the home (unless deleting) and stop it, stop PostgreSQL."""
    if not home.root.is_dir():
        log.info("nothing to stop: no shared tracking set-up in %s", home.root)
        return
    with home.locked():
        state = home.load_state()
        processes = state.get("processes", {})
        daemons.stop(processes.pop("mlflow", None))
        if state.get("s3", {}).get("managed") and daemons.alive(processes.get("s3")):
            if not delete_data:
                saved = object_store.save_bucket(s3_store(home, state), home.root / "bucket")
                log.info("saved %d object(s) of s3://%s to %s", saved, state["s3"]["bucket"], home.root / "bucket")
        daemons.stop(processes.pop("s3", None))
        postgres = Postgres.for_home(home, state.get("ports", {}).get("postgres", 0))
        postgres.stop()  # found by its data folder, also when state.json is gone
        if state:
            home.save_state(state)
        if delete_data:
            postgres.delete()
    if delete_data:
        home.delete()
        log.info("deleted the set-up's databases, bucket copy, secrets and logs (%s)", home.root)


def status(home: TrackingHome) -> dict:
    """Return what runs where: each server's address, whether it answers, its process and log."""
    state = home.load_state()
    if not state:
        return {"home": str(home.root), "servers": {}}
    processes = state.get("processes", {})
    postgres = Postgres.for_home(home, state["ports"]["postgres"])
    servers = {"postgres": {"address": f"127.0.0.1:{state['ports']['postgres']}", "running": postgres.running(),
                            "data": str(postgres.data), "log": str(postgres.log_file)}}
    if state["s3"]["managed"]:
        servers["s3"] = {"address": f"http://127.0.0.1:{state['ports']['s3']}", "kind": "moto (in memory)",
                         "running": daemons.alive(processes.get("s3")) and listening(state["ports"]["s3"]),
                         "bucket": state["s3"]["bucket"], "log": processes.get("s3", {}).get("log")}
    else:
        servers["s3"] = {"address": state["s3"]["endpoint_url"], "kind": "external", "bucket": state["s3"]["bucket"]}
    servers["mlflow"] = {"address": state.get("tracking_uri"), "running": daemons.alive(processes.get("mlflow"))
                         and mlflow_server.healthy(state.get("tracking_uri", "")),
                         "log": processes.get("mlflow", {}).get("log")}
    return {"home": str(home.root), "servers": servers}
