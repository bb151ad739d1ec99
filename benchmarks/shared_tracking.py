"""The shared tracking set-up: start-up time of its three servers, the train stage's time against it vs the local
sqlite store (same run), and the runs/s it takes from two concurrent clients; print JSON.

Starts its own set-up in a temporary home (ports chosen free) and deletes it afterwards. The training uses the
processed data of this checkout (run `dvc repro` first). Run: `.venv/bin/python benchmarks/shared_tracking.py`.
"""

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parent.parent


def _tracking(home: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "crossmed.cli", "tracking", "--home", str(home), *args], check=True,
                   capture_output=True, text=True, timeout=300)


def _startup(home: Path) -> dict:
    """Time `up` on a new home (databases, bucket and admin created) and again after `down` (what a restart costs)."""
    began = time.perf_counter()
    _tracking(home, "up", "--port", "0")
    cold = time.perf_counter() - began
    cold_parts = json.loads((home / "state.json").read_text())["startup"]
    _tracking(home, "down")
    began = time.perf_counter()
    _tracking(home, "up")
    warm = time.perf_counter() - began
    return {"first_up_s": round(cold, 2), "first_up_parts_s": cold_parts, "up_after_down_s": round(warm, 2),
            "up_after_down_parts_s": json.loads((home / "state.json").read_text())["startup"]}


def _train_seconds(root: Path, epochs: int, env: dict) -> float:
    """Run the train stage on this checkout's data in its own process with `env`; return its wall time."""
    from crossmed.params_file import compose_params
    from crossmed.study_paths import folder_overrides

    cfg = OmegaConf.create(compose_params(REPO / "conf", overrides=[f"train.max_epochs={epochs}",
                                                                    *folder_overrides(root, ("models", "experiments"))]))
    cfg.paths.processed = str(REPO / "data" / "processed")
    cfg.mlflow.tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    OmegaConf.save(cfg, root / "config.yaml")
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "crossmed.stages", "train", str(root / "config.yaml")],
                          capture_output=True, text=True, env={**os.environ, **env})
    if done.returncode != 0:
        sys.exit(done.stderr[-3000:])
    return time.perf_counter() - began


def _client(credentials: dict, experiment_id: str, seconds: float, queue) -> None:
    """Create, fill and end runs for `seconds` (5 params, 5 metrics each); put how many were made."""
    os.environ.update(credentials)
    sys.stdout = open(os.devnull, "w")  # MLflow prints a link per ended run; this script's stdout is its JSON
    import mlflow
    from mlflow.entities import Metric, Param

    client, made, deadline = mlflow.MlflowClient(credentials["MLFLOW_TRACKING_URI"]), 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        run = client.create_run(experiment_id)
        now = int(time.time() * 1000)
        client.log_batch(run.info.run_id, metrics=[Metric(f"m{i}", i / 10, now, 0) for i in range(5)],
                         params=[Param(f"p{i}", str(i)) for i in range(5)])
        client.set_terminated(run.info.run_id)
        made += 1
    queue.put(made)


def _runs_per_second(home: Path, users: dict, seconds: float) -> dict:
    """Two client processes (two site users) log runs concurrently; return runs/s in all."""
    import mlflow

    from crossmed.shared_tracking.accounts import signed_in

    experiments = {}
    for name, credentials in users.items():
        with signed_in(credentials["MLFLOW_TRACKING_USERNAME"], credentials["MLFLOW_TRACKING_PASSWORD"]):
            experiments[name] = mlflow.MlflowClient(credentials["MLFLOW_TRACKING_URI"]).create_experiment(f"load-{name}")
    queue = multiprocessing.get_context("spawn").Queue()
    workers = [multiprocessing.get_context("spawn").Process(target=_client, args=(users[name], experiments[name],
                                                                                   seconds, queue)) for name in users]
    began = time.perf_counter()
    for worker in workers:
        worker.start()
    made = [queue.get(timeout=seconds + 120) for _ in workers]
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    return {"clients": len(workers), "runs": sum(made), "seconds": round(elapsed, 1),
            "runs_per_second": round(sum(made) / elapsed, 1), "per_run": "create, 5 params + 5 metrics, end"}


def main() -> None:
    """Measure and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the compared training runs")
    parser.add_argument("--load-seconds", type=float, default=30, help="how long the two clients log runs")
    args = parser.parse_args()
    if not (REPO / "data" / "processed" / "manifest.csv").is_file():
        sys.exit("data/processed is missing: run `dvc repro` first")
    from crossmed.shared_tracking.accounts import read_credentials

    with tempfile.TemporaryDirectory(prefix="crossmed-tracking-") as tmp:
        home = Path(tmp) / "home"
        try:
            result = {"startup": _startup(home)}
            users = {}
            for name in ("KR", "EE"):
                _tracking(home, "user", "add", name)
                users[name] = read_credentials(home / "secrets" / "users" / f"{name}.env")
            (Path(tmp) / "local").mkdir()
            (Path(tmp) / "shared").mkdir()
            local = _train_seconds(Path(tmp) / "local", args.epochs, {})
            shared = _train_seconds(Path(tmp) / "shared", args.epochs, users["KR"])
            result["training"] = {"epochs": args.epochs, "local_sqlite_s": round(local, 1), "shared_server_s": round(shared, 1),
                                  "ratio_shared_to_local": round(shared / local, 3)}
            result["load"] = _runs_per_second(home, users, args.load_seconds)
        finally:
            _tracking(home, "down", "--delete-data")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
