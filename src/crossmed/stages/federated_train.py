"""Stage `train` with train.strategy=federated: a Flower federation on this machine, then the same outputs as centralised training.

As a trial, the stage plays every part of a federation that a real study spreads over hospitals: it cuts the processed
data into one folder per training site (what each hospital's own preprocess would have written), starts the
coordinator (a Flower SuperLink) and one site process per site (SuperNodes, each given only its own folder), submits
crossmed's Flower app and follows the rounds. With train.federated.superlink it submits to a coordinator that already
runs and that the sites joined themselves (`crossmed site join`), reading no data: what it records of the data is what
the sites reported. It writes paths.checkpoint (the best round's global weights by the sites'
validation), paths.history (one row per round) and paths.training_run like centralised training, so evaluate,
export and report run unchanged. MLflow gets one run for the federation (per-round global validation, bytes sent
and received, seconds) and a nested run per site (its local training and validation figures).
"""

import hashlib
import json
import logging
import shutil
import signal
import time
from pathlib import Path

import mlflow
import torch
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from crossmed.data.processed import ProcessedData, data_fingerprint
from crossmed.data.task import Task
from crossmed.devices import describe_device, resolve_device
from crossmed.errors import ConfigError, CrossmedError
from crossmed.federated.coordinator import (FAILURE_FILE, PROGRESS_FILE, RESULT_FILE, STATE_FILE, FederationError,
                                            running_statistics_problem)
from crossmed.federated.messages import STUDY_CONFIG_KEY, WORK_DIR_KEY, encode_study_config
from crossmed.federated.plan import FederationPlan
from crossmed.federated.processes import FINISHED, LocalFederation, ProcessExited, RemoteFederation, can_hide_folders
from crossmed.federated.security import make_trial_security
from crossmed.federated.site_data import write_site_folders
from crossmed.files import write_json_atomic
from crossmed.model.checkpoint import save_checkpoint
from crossmed.model.networks import build_network, fit_to_task
from crossmed.reproducibility import describe, in_effect
from crossmed.stages.train import checkpoint_info, data_facts, log_data_card, run_tags, write_history
from crossmed.tracking import (EPOCH, TRAINING, log_trained_model, metric_names, open_store, run_name, save_run_reference,
                               start_study_run, tag_file)
from crossmed.training.resume import fingerprint

log = logging.getLogger("crossmed.train")
HISTORY_FIELDS = ("epoch", "round", "train_loss", "val_loss", "val_auc", "learning_rate", "train_images")
ROUND_FIGURES = ("train_loss", "val_loss", "val_auc", "learning_rate", "train_images", "bytes_sent", "bytes_received", "seconds",
                 "epsilon")
SITE_FIGURES = ("train_loss", "train_images", "val_loss", "val_auc", "val_images", "seconds")
RUNS_FILE = "mlflow_runs.json"  # the federation's MLflow runs, so a resumed federation keeps logging to them
STATUS_EVERY_S = 10


def run(cfg: DictConfig) -> dict:
    """Train by federation; write the checkpoint, history and run reference as centralised training does; return the best round."""
    plan = FederationPlan.from_config(cfg)
    root = Path(cfg.paths.federation).resolve()
    work = root / "coordinator"
    arithmetic = describe(in_effect(cfg))
    if plan.superlink is None:  # a trial: this machine holds every site's data and plays every part
        data = ProcessedData.load(cfg.paths.processed)
        if plan.privacy is not None:
            _check_no_running_statistics(_net_config(cfg, data_facts(data)))
        folders = write_site_folders(cfg.paths.processed, root / "site_data", plan.sites)
        data_sha256 = data_fingerprint(cfg.paths.processed)
    else:  # a real coordinator holds no site's data: what it knows of the data is what the sites report when they join
        if not Path(plan.superlink_ca).is_file():
            raise ConfigError("train.federated.superlink_ca", f"{plan.superlink_ca}: no such file")
        _federation(plan, root, None).check_reachable()  # before any MLflow run is opened
        data, folders, data_sha256 = None, None, plan.superlink
    training_id = fingerprint(encode_study_config(cfg), data_sha256)  # what the rounds so far were trained from
    resuming = (work / STATE_FILE).is_file() and _recorded(root).get("fingerprint") == training_id
    if plan.superlink is not None:
        # The data is the sites': only the coordinator can tell (from their reported hashes) whether its saved rounds
        # still hold, so it keeps its state and decides; the MLflow runs are new and get every round it reports.
        resuming = False
    elif not resuming:
        (work / STATE_FILE).unlink(missing_ok=True)  # another config or other data: start again from round 1
    for stale in (RESULT_FILE, FAILURE_FILE) if resuming else (RESULT_FILE, FAILURE_FILE, PROGRESS_FILE):
        (work / stale).unlink(missing_ok=True)
    runs = _open_runs(cfg, root, plan, data, arithmetic, data_sha256, training_id if not resuming else None)
    if resuming:
        log.info("resuming: the coordinator continues after round %d of %d if the plan and the sites' data are unchanged",
                 _completed_rounds(work), plan.rounds)
    log.info("federated training: %s over sites %s, %d rounds x %d local epochs, %s", cfg.model.name, ", ".join(plan.sites),
             plan.rounds, plan.local_epochs, plan.aggregation + (f" (mu {plan.proximal_mu})" if plan.aggregation == "fedprox" else ""))
    started = time.perf_counter()
    previous_handler = signal.signal(signal.SIGTERM, _terminate)  # a terminated stage stops its processes too
    try:
        with _federation(plan, root, folders) as federation:
            run_id = federation.submit({STUDY_CONFIG_KEY: encode_study_config(cfg), WORK_DIR_KEY: str(work)})
            try:
                _follow(federation, run_id, work, plan, runs)
            except BaseException:
                if plan.superlink is not None:  # nothing here stops a remote coordinator's run: ask it to
                    federation.stop_run(run_id)
                raise
        if not (work / RESULT_FILE).is_file():
            raise CrossmedError(f"the coordinator finished run {run_id} but its result is not in {work}: run the stage on "
                                f"the SuperLink's machine (its ServerApp writes there)")
        result = torch.load(work / RESULT_FILE, map_location="cpu", weights_only=False)
        _log_rounds(result["history"], runs, plan)
        facts = data_facts(data) if data is not None else _reported_data(result["sites"], plan)
        if data is None:  # the data tags and card the sites' reports give (counts and hashes only)
            mlflow.set_tags(_reported_data_tags(result["sites"], plan))
            mlflow.log_dict({site: result["sites"][site] for site in plan.sites}, "data/sites.json")
        net_cfg = _net_config(cfg, facts)
        net = build_network(net_cfg)
        net.load_state_dict(result["weights"])
        best = next(r for r in result["history"] if r["round"] == result["best_round"])
        federated = {"sites": list(plan.sites), "rounds": plan.rounds, "local_epochs": plan.local_epochs,
                     "aggregation": plan.aggregation, "best_round": best["round"]}
        if plan.secure is not None:
            federated["secure_aggregation"] = "SecAgg+"
        if plan.privacy is not None:  # what every released aggregate cost, not only the best round's
            last = result["history"][-1]
            federated["differential_privacy"] = {**plan.privacy.as_dict(), "epsilon": round(last["epsilon"], 4),
                                                 "releases": len(result["history"]), "unit": "site (one hospital's whole data)"}
        info = {**checkpoint_info(cfg, facts, net_cfg, arithmetic["arithmetic"]), "epoch": best["epoch"], "val_auc": best["val_auc"],
                "federated": federated}
        save_checkpoint(cfg.paths.checkpoint, net, info)
        written = tag_file("checkpoint", cfg.paths.checkpoint)
        log_trained_model(cfg.model.name, f"MONAI {net_cfg['_target_'].rsplit('.', 1)[-1]} (federated)", written["sha256"],
                          metric_names(TRAINING, {"best_val_auc": best["val_auc"], "best_round": best["round"],
                                                  "best_epoch": best["epoch"], "rounds": plan.rounds}))
        fields = HISTORY_FIELDS + (("epsilon",) if plan.privacy is not None else ())
        write_history(cfg.paths.history, [{k: r.get(k) for k in fields} for r in result["history"]])
        mlflow.log_artifact(str(cfg.paths.history), artifact_path="training")
    except ProcessExited as err:
        _end_runs(runs, "FAILED")
        done = _completed_rounds(work)
        raise FederationError(f"federated training stopped: {err}\nRun the stage again to continue after round {done} "
                              f"(the last completed one).", site=err.site) from err
    except BaseException:
        _end_runs(runs, "FAILED")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    _end_runs(runs, "FINISHED")
    for finished in (work / STATE_FILE, root / "site_data", root / RUNS_FILE):  # done: a rerun trains afresh
        shutil.rmtree(finished, ignore_errors=True) if finished.is_dir() else finished.unlink(missing_ok=True)
    log.info("federated training finished in %.0f s: best global val AUC %.4f at round %d of %d; wrote %s and %s",
             time.perf_counter() - started, best["val_auc"], best["round"], plan.rounds, cfg.paths.checkpoint, cfg.paths.history)
    return best


def _federation(plan: FederationPlan, root: Path, folders: dict | None) -> LocalFederation | RemoteFederation:
    """Return the federation to submit to: the coordinator at train.federated.superlink, else a trial on this machine."""
    if plan.superlink is not None:
        return RemoteFederation(root / "processes", plan.superlink, Path(plan.superlink_ca))
    security = make_trial_security(root / "security", plan.sites) if plan.tls else None
    return LocalFederation(root / "processes", folders, hide_site_data=_hide(plan), security=security)


def _net_config(cfg: DictConfig, facts: dict) -> dict:
    """Return the network config fitted to the data's task and image shape (`facts` as data_facts returns them)."""
    task = Task.from_dict(facts["task"])
    return fit_to_task(cfg.model.net, task.channels, task.outputs, task.spatial_dims, tuple(facts["image_shape"][1:]))


def _reported_data(sites: dict[str, dict], plan: FederationPlan) -> dict:
    """Return the data facts the training sites reported when they joined (the coordinator checked they agree)."""
    return {key: sites[plan.sites[0]][key] for key in ("task", "image_shape", "preprocessing", "recipe")}


def _reported_data_tags(sites: dict[str, dict], plan: FederationPlan) -> dict:
    """Return the run's data tags from the sites' reports: the task, the sites, and one SHA-256 over their data hashes."""
    digest = hashlib.sha256("".join(f"{site}:{sites[site]['data_sha256']};" for site in plan.sites).encode()).hexdigest()
    return {"data.sha256": digest, "data.format": "reported by the sites", "study.task": sites[plan.sites[0]]["task"]["type"],
            "study.sites": ",".join(plan.sites)}


def _check_no_running_statistics(net_cfg: dict) -> None:
    """Raise ConfigError when the network keeps running statistics (BatchNorm), which DP noise would turn meaningless."""
    problem = running_statistics_problem(build_network(net_cfg))
    if problem:
        raise ConfigError("train.federated.differential_privacy", problem)


def _terminate(signum, frame) -> None:
    """Turn SIGTERM into an exception, so the federation's processes are stopped on the way out."""
    raise SystemExit(128 + signum)


def _completed_rounds(work: Path) -> int:
    """Return how many rounds the coordinator saved (what a rerun continues after)."""
    progress = work / PROGRESS_FILE
    return len(json.loads(progress.read_text())["history"]) if progress.is_file() else 0


def _hide(plan: FederationPlan) -> bool:
    """Return whether to hide the site folders from the coordinator (train.federated.hide_site_data)."""
    possible = can_hide_folders()
    if plan.hide_site_data == "true" and not possible:
        raise ConfigError("train.federated.hide_site_data", "true needs root and `unshare` (a mount namespace for the "
                                                            "coordinator); use auto or false here")
    if plan.hide_site_data == "auto" and not possible:
        log.info("the coordinator can see the sites' folders (hiding them needs root and `unshare`); it opens none of them")
    return possible and plan.hide_site_data != "false"


def _recorded(root: Path) -> dict:
    """Return what the last unfinished run of this federation recorded (its MLflow runs and fingerprint), {} if none."""
    runs_file = root / RUNS_FILE
    return json.loads(runs_file.read_text()) if runs_file.is_file() else {}


def _open_runs(cfg, root: Path, plan: FederationPlan, data, arithmetic: dict, data_sha256: str, fresh: str | None) -> dict:
    """Start the federation's MLflow run and a nested run per site, recording `fresh` as the training's fingerprint
    (or, when `fresh` is None, reopen the runs of the federation being resumed); return their IDs."""
    runs_file = root / RUNS_FILE
    if fresh is None:
        runs = _recorded(root)
        open_store(cfg.mlflow.tracking_uri)
        mlflow.start_run(run_id=runs["federation"])
        log.info("resuming the federation's MLflow run %s", runs["federation"])
    else:
        device_info = {**describe_device(resolve_device(str(cfg.train.device))),
                       "processes": 1 if data is None else len(plan.sites) + 1}
        parent = start_study_run(cfg, run_name=run_name(f"{cfg.model.name} federated"),
                                 extra_tags={**run_tags(cfg, data, device_info, arithmetic, data_sha256 if data is not None else None),
                                             "federated.sites": ",".join(plan.sites), "federated.aggregation": plan.aggregation,
                                             "federated.coordinator": plan.superlink or "this machine (trial)"})
        mlflow.log_params({"federated.rounds": plan.rounds, "federated.local_epochs": plan.local_epochs})
        if data is not None:
            log_data_card(cfg.paths.processed, f"{cfg.study.name} processed", data_sha256)
        client = MlflowClient()
        sites = {site: client.create_run(parent.info.experiment_id, run_name=f"site {site}",
                                         tags={"mlflow.parentRunId": parent.info.run_id, "federated.site": site,
                                               "train.strategy": "federated"}).info.run_id for site in plan.sites}
        runs = {"federation": parent.info.run_id, "sites": sites, "logged_rounds": 0, "fingerprint": fresh}
        write_json_atomic(runs_file, runs)
    save_run_reference(cfg.paths.training_run, mlflow.active_run())
    return {**runs, "file": str(runs_file)}


def _follow(federation: LocalFederation, run_id: int, work: Path, plan: FederationPlan, runs: dict) -> None:
    """Wait for the Flower run to finish, logging each validated round as it comes; raise naming the failing site."""
    last_status = time.monotonic()
    while True:
        time.sleep(1)
        if (work / PROGRESS_FILE).is_file():
            _log_rounds(json.loads((work / PROGRESS_FILE).read_text())["history"], runs, plan)
        if (work / FAILURE_FILE).is_file() and not (work / RESULT_FILE).is_file():
            failure = json.loads((work / FAILURE_FILE).read_text())
            raise FederationError(f"federated training failed at {('site ' + failure['site']) if failure['site'] else 'the coordinator'}: "
                                  f"{failure['reason']}", site=failure["site"])
        federation.check_alive()
        if time.monotonic() - last_status < STATUS_EVERY_S and not (work / RESULT_FILE).is_file():
            continue
        last_status = time.monotonic()
        status = federation.status(run_id)
        state = str(status.get("status", ""))
        if state == FINISHED + "completed" and (work / RESULT_FILE).is_file():
            return
        if state.startswith(FINISHED):
            raise CrossmedError(f"the federated run ended {state.removeprefix(FINISHED)}: {status.get('status-details')} "
                                f"(coordinator log: `flwr log {run_id}`; site logs in {federation.root / 'logs'})")


def _log_rounds(history: list[dict], runs: dict, plan: FederationPlan) -> None:
    """Log the rounds not logged yet whose validation is in: global figures to the federation's run, site figures to each site's."""
    client = MlflowClient()
    for record in history[runs["logged_rounds"]:]:
        if "val_auc" not in record:
            break
        step = record["round"]
        mlflow.log_metrics(metric_names("round", {k: record.get(k) for k in ROUND_FIGURES}), step=step)
        mlflow.log_metrics(metric_names(EPOCH, {"val_auc": record["val_auc"], "val_loss": record["val_loss"],
                                                "train_loss": record["train_loss"]}), step=record["epoch"])
        for site, figures in record["sites"].items():
            for name in SITE_FIGURES:
                if figures.get(name) is not None:
                    client.log_metric(runs["sites"][site], f"site/{name}", float(figures[name]), step=step)
        traffic = ("sums masked by SecAgg+" if record.get("secure_aggregation") else
                   f"{record['bytes_sent'] / 1e6:.1f} MB sent, {record['bytes_received'] / 1e6:.1f} MB received")
        log.info("round %d/%d: global val AUC %.4f, val loss %.4f, train loss %.4f, %s, %.0f s", step, plan.rounds,
                 record["val_auc"], record["val_loss"], record["train_loss"], traffic, record["seconds"])
        runs["logged_rounds"] += 1
        write_json_atomic(runs["file"], {k: v for k, v in runs.items() if k != "file"})


def _end_runs(runs: dict, status: str) -> None:
    """End the site runs and the federation's run with `status`."""
    client = MlflowClient()
    for run_id in runs["sites"].values():
        client.set_terminated(run_id, status)
    mlflow.end_run(status=status)
