"""The coordinator's side of a federation: admit the sites, run the rounds, aggregate with Flower's strategy, checkpoint.

It never opens a site's files: what it knows of a site is what the site replied (counts, the data's recipe, weights,
statistics). Replies are aggregated in the plan's site order, whatever order they arrive in, so a rerun sums the same
numbers in the same order and gives the same global weights. After every round the state (global weights, the best
round so far, the per-round records) is written atomically to the work folder; a coordinator started again with the
same plan and the same sites' data continues after the last completed round.
"""

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg, FedProx, Strategy

from crossmed.data.task import Task
from crossmed.devices import resolve_device, seed_everything
from crossmed.errors import CrossmedError
from crossmed.federated.messages import METRICS, SITE, SITE_KEY, UNIT_WEIGHT_KEY, WEIGHT_KEY, content_bytes
from crossmed.federated.wire import flatten, from_record, to_record, unflatten
from crossmed.federated.plan import FederationPlan, PrivacyPlan
from crossmed.federated.site_training import round_seed
from crossmed.files import write_json_atomic
from crossmed.model.networks import build_network, fit_to_task
from crossmed.training.resume import fingerprint, save_state

log = logging.getLogger("crossmed.federated.coordinator")
STATE_FILE, PROGRESS_FILE, RESULT_FILE, FAILURE_FILE = "coordinator_state.pt", "progress.json", "result.pt", "failure.json"
LOG_FILE = "coordinator.log"  # the ServerApp's log, appended to by every run of this federation
STATE_FORMAT = 1
JOIN_TIMEOUT_S = 300
FIRST_POLL_S, LONGEST_POLL_S = 0.1, 3.0  # replies are looked for after 0.1 s, then ever less often, at most every 3 s


class FederationError(CrossmedError):
    """A site failed or did not answer: the message names it."""

    def __init__(self, message: str, site: str | None = None):
        super().__init__(message)
        self.site = site


def make_strategy(plan: FederationPlan) -> Strategy:
    """Return Flower's FedAvg (or FedProx) sending to and waiting for every site of the plan; with differential privacy,
    wrapped in Flower's server-side fixed clipping with its RDP accountant (every site's update weighs the same)."""
    every_site = {"fraction_train": 1.0, "fraction_evaluate": 1.0, "min_train_nodes": len(plan.sites),
                  "min_evaluate_nodes": len(plan.sites), "min_available_nodes": len(plan.sites),
                  "weighted_by_key": UNIT_WEIGHT_KEY if plan.privacy else WEIGHT_KEY}
    inner = FedProx(proximal_mu=plan.proximal_mu, **every_site) if plan.aggregation == "fedprox" else FedAvg(**every_site)
    if plan.privacy is None:
        return inner
    return DifferentialPrivacyServerSideFixedClipping(inner, plan.privacy.noise_multiplier, plan.privacy.clipping_norm,
                                                      len(plan.sites), accountant=make_accountant(plan.privacy, len(plan.sites)))


def make_accountant(privacy: PrivacyPlan, sites: int):
    """Return Flower's RDP accountant for site-level DP over `sites` sites, every one taking part in every round."""
    from flwr.serverapp import NeighboringRelation, PrivacyConfig, RdpAccountant, SamplingMethod

    return RdpAccountant(PrivacyConfig(target_delta=privacy.delta, population_size=sites,
                                       neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                                       sampling_method=SamplingMethod.NO_AMPLIFICATION, max_epsilon=privacy.max_epsilon))


def privacy_spent(strategy: Strategy) -> dict | None:
    """Return {epsilon, delta, releases} the strategy's accountant has counted so far, or None without privacy."""
    spent = strategy.privacy_spent() if isinstance(strategy, DifferentialPrivacyServerSideFixedClipping) else None
    if spent is None:
        return None
    return {"epsilon": float(spent.epsilon), "delta": float(spent.delta), "releases": int(spent.num_releases)}


class Coordinator:
    """One federated training: the plan, the strategy, the work folder and what the sites told it when they joined."""

    def __init__(self, cfg, work_dir: str | Path, context=None):
        self.cfg, self.plan, self.work, self.context = cfg, FederationPlan.from_config(cfg), Path(work_dir), context
        self.strategy = make_strategy(self.plan)
        self.nodes: dict[int, str] = {}      # Flower node ID -> site code, from the join replies
        self.sites: dict[str, dict] = {}     # site -> what it reported when joining (counts, recipe, data hash)

    def run(self, grid: Grid) -> None:
        """Run every remaining round and write the result; on a site's failure write failure.json naming it, then raise."""
        self.work.mkdir(parents=True, exist_ok=True)
        try:
            self._run(grid)
        except FederationError as err:
            write_json_atomic(self.work / FAILURE_FILE, {"site": err.site, "reason": str(err)})
            log.error("federation stopped: %s", err)
            raise

    def _run(self, grid: Grid) -> None:
        (self.work / FAILURE_FILE).unlink(missing_ok=True)
        self.join(grid)
        state_id = fingerprint(STATE_FORMAT, self._training_config(), self.sites)
        state = self._saved_state(state_id) or self._initial_state(state_id)
        if state.get("accountant") is not None:  # resumed: the privacy spent by the rounds already done counts
            self.strategy.accountant.load_state_dict(state["accountant"])
        for round_number in range(state["round"] + 1, self.plan.rounds + 1):
            record, weights, validation = self.run_round(grid, round_number, state["weights"])
            self._validated(state, validation)
            state["history"].append(record)
            state.update(round=round_number, epoch=record["epoch"], weights=weights)
            if self.plan.privacy is not None:
                state["accountant"] = self.strategy.accountant.state_dict()
            self._save(state)
        if state["history"] and "val_auc" not in state["history"][-1]:
            self._validated(state, self.validate(grid, state["weights"]))
            self._save(state)
        best = state["best"]
        torch.save({"weights": best["weights"], "best_round": best["round"], "best_val_auc": best["val_auc"],
                    "history": state["history"], "sites": self.sites, "plan": self._training_config()["plan"]},
                   self.work / RESULT_FILE)
        log.info("federation finished: %d rounds, best global val AUC %.4f at round %d; wrote %s", self.plan.rounds,
                 best["val_auc"], best["round"], self.work / RESULT_FILE)

    def _validated(self, state: dict, validation: dict[str, dict]) -> None:
        """Complete the latest round's record with the sites' validation of its weights; keep them if they are the best so far."""
        figures = {"val_loss": _weighted(validation, "val-loss", "val-images"), "val_auc": _weighted(validation, "val-auc", "val-images")}
        if not state["history"]:  # the initial network: logged, never the best
            log.info("initial network: global val loss %.4f, val AUC %.4f", figures["val_loss"], figures["val_auc"])
            state["initial"] = figures
            return
        record = state["history"][-1]
        record.update(figures)
        for site, values in validation.items():
            record["sites"][site].update({k.replace("-", "_"): v for k, v in values.items() if k != WEIGHT_KEY})
        best = state["best"]
        if best is None or _better(record["val_auc"], best["val_auc"]):
            state["best"] = {"round": record["round"], "epoch": record["epoch"], "val_auc": record["val_auc"],
                             "weights": state["weights"]}
        log.info("round %d/%d validated at the sites: global val loss %.4f, val AUC %.4f%s", record["round"], self.plan.rounds,
                 record["val_loss"], record["val_auc"], " (best)" if state["best"]["round"] == record["round"] else "")

    def _save(self, state: dict) -> None:
        """Write the state (for resuming) and the progress the train stage reads (per-round records, no weights)."""
        save_state(self.work / STATE_FILE, state)
        write_json_atomic(self.work / PROGRESS_FILE, {"rounds": self.plan.rounds, "history": state["history"],
                                                       "initial": state.get("initial"),
                                                       "best_round": state["best"]["round"] if state["best"] else None})

    def join(self, grid: Grid) -> None:
        """Ask every connected site who it is; raise FederationError when an expected site is missing, duplicated or failing."""
        expected = set(self.plan.sites)
        waited = time.monotonic()
        while len(node_ids := sorted(grid.get_node_ids())) < len(expected):
            if time.monotonic() - waited > JOIN_TIMEOUT_S:
                raise FederationError(f"only {len(node_ids)} of {len(expected)} site processes connected within "
                                      f"{JOIN_TIMEOUT_S} s (expected sites: {', '.join(self.plan.sites)})")
            time.sleep(1)
        asks = [Message(RecordDict({}), dst_node_id=node, message_type=MessageType.QUERY) for node in node_ids]
        replies = send_and_receive(grid, asks, JOIN_TIMEOUT_S)
        failures = [reply for reply in replies if reply.has_error()]
        if failures:
            raise FederationError("; ".join(reply.error.reason or f"node {reply.metadata.src_node_id} failed" for reply in failures),
                                  site=_site_in(failures[0].error.reason))
        for reply in replies:
            site = str(reply.content[SITE][SITE_KEY])
            if site in self.sites:
                raise FederationError(f"two site processes say they are site {site}", site=site)
            if site not in expected:
                log.warning("site %s is connected but not in this study's plan (%s): not asked to train", site,
                            ", ".join(self.plan.sites))
                continue
            self.nodes[reply.metadata.src_node_id] = site
            self.sites[site] = {**dict(reply.content[METRICS]), **json.loads(str(reply.content[SITE]["data"]))}
        missing = expected - set(self.sites)
        if missing:
            raise FederationError(f"no reply from site {', '.join(sorted(missing))} (connected: {', '.join(sorted(self.sites)) or 'none'})",
                                  site=sorted(missing)[0])
        recipes = {json.dumps([info["task"], info["image_shape"], info["recipe"]], sort_keys=True) for info in self.sites.values()}
        if len(recipes) > 1:
            raise FederationError("the sites' data have different tasks or preprocessing: " + "; ".join(
                f"{site}: task {info['task']}, shape {info['image_shape']}, recipe {info['recipe']}" for site, info in self.sites.items()))
        for site in self.plan.sites:
            info = self.sites[site]
            log.info("site %s joined: %d training and %d validation images", site, info["train-images"], info["val-images"])

    def run_round(self, grid: Grid, round_number: int, weights: dict) -> tuple[dict, dict, dict[str, dict]]:
        """Send the global weights for a round of local training and aggregate the replies.

        Return the round's record (training figures and bytes), the new global weights, and each site's validation of
        the weights it was sent (a site validates them before training: one exchange per round instead of two).
        """
        started = time.perf_counter()
        if self.plan.secure is not None:
            return self._secure_round(grid, round_number, weights, started)
        order = ConfigRecord({"local-epochs": self.plan.local_epochs, "total-epochs": self.plan.total_epochs})
        try:
            messages = self.strategy.configure_train(round_number, to_record(weights), order, grid)
        except Exception as err:  # Flower's PrivacyBudgetExhausted: the next release would pass max_epsilon
            if type(err).__name__ != "PrivacyBudgetExhausted":
                raise
            raise FederationError(f"round {round_number} not run: {err} (train.federated.differential_privacy.max_epsilon)") from err
        sent, replies = self._exchange(grid, messages)
        np.random.seed(round_seed(int(self.cfg.seed), "coordinator", round_number))  # DP noise: the same on a rerun
        arrays, _ = self.strategy.aggregate_train(round_number, replies)
        if arrays is None:
            raise FederationError(f"round {round_number}: Flower's strategy aggregated nothing (see coordinator.log)")
        sites = {self.nodes[r.metadata.src_node_id]: dict(r.content[METRICS]) for r in replies}
        record, validation = self._record(round_number, sites, sent, sum(content_bytes(r) for r in replies), started)
        spent = privacy_spent(self.strategy)
        if spent is not None:
            record.update(epsilon=spent["epsilon"], delta=spent["delta"])
            log.info("round %d: privacy spent epsilon %.4f at delta %g (site-level, %d releases)", round_number,
                     spent["epsilon"], spent["delta"], spent["releases"])
        log.info("round %d/%d aggregated: train loss %.4f, %d bytes sent, %d received, %.1f s", round_number, self.plan.rounds,
                 record["train_loss"], record["bytes_sent"], record["bytes_received"], record["seconds"])
        return record, from_record(arrays, weights), validation

    def _record(self, round_number: int, sites: dict[str, dict], sent: int | None, received: int | None,
                started: float) -> tuple[dict, dict[str, dict]]:
        """Return a round's record from each site's figures, and each site's validation of the weights it was sent."""
        validation = {site: {k: v for k, v in figures.items() if k.startswith("val-")} for site, figures in sites.items()}
        record = {"round": round_number, "epoch": round_number * self.plan.local_epochs,
                  "train_loss": _weighted(sites, "train-loss", "train-images"),
                  "learning_rate": sites[self.plan.sites[0]]["learning-rate"],
                  "train_images": int(sum(s["train-images"] for s in sites.values())),
                  "bytes_sent": sent, "bytes_received": received, "seconds": time.perf_counter() - started,
                  "sites": {site: {k.replace("-", "_"): sites[site][k] for k in ("train-loss", "train-images", "seconds")}
                            for site in self.plan.sites}}
        return record, validation

    def _secure_round(self, grid: Grid, round_number: int, weights: dict, started: float) -> tuple[dict, dict, dict[str, dict]]:
        """Run one round under SecAgg+ (Flower's legacy workflow, the only path its protocol has): every site sends its
        update masked, the coordinator unmasks only their weighted sum and adds it to the global weights."""
        from flwr.common import ndarrays_to_parameters
        from flwr.server import LegacyContext, ServerConfig
        from flwr.server.strategy import FedAvg as LegacyFedAvg
        from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

        if self.context is None:
            raise FederationError("secure aggregation needs the ServerApp's context")
        flat, joined, figures = flatten(weights), dict(self.nodes), {}
        plan, n = self.plan, len(self.plan.sites)
        config = {"server-round": round_number, "local-epochs": plan.local_epochs, "total-epochs": plan.total_epochs,
                  "proximal-mu": plan.proximal_mu if plan.aggregation == "fedprox" else 0.0,
                  "clipping-range": plan.secure["clipping_range"]}
        summed: list = []

        class JoinedSitesOnly(LegacyFedAvg):
            """FedAvg asking only the joined sites, keeping each site's figures and SecAgg+'s unmasked sum as it is."""

            def configure_fit(self, server_round, parameters, client_manager):
                return [(proxy, ins) for proxy, ins in super().configure_fit(server_round, parameters, client_manager)
                        if proxy.node_id in joined]

            def aggregate_fit(self, server_round, results, failures):
                for proxy, fit in results:
                    figures[joined[proxy.node_id]] = dict(fit.metrics)
                if results:
                    summed.append(results[0][1].parameters)  # the workflow put the unmasked weighted mean in every result
                return (results[0][1].parameters if results else None), {}

        strategy = JoinedSitesOnly(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n, min_available_clients=n,
                                   initial_parameters=ndarrays_to_parameters([flat]), on_fit_config_fn=lambda _: config)
        legacy = LegacyContext(context=self.context, config=ServerConfig(num_rounds=1), strategy=strategy)
        largest = max(int(info["train-images"]) for info in self.sites.values())
        DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(num_shares=1.0, reconstruction_threshold=1.0, max_weight=float(largest),
                                                        clipping_range=plan.secure["clipping_range"],
                                                        quantization_range=plan.secure["quantization_range"],
                                                        timeout=plan.round_timeout_s))(grid, legacy)
        missing = [site for site in plan.sites if site not in figures]
        if missing or not summed:
            raise FederationError(f"round {round_number} under secure aggregation: no result from site "
                                  f"{', '.join(missing) or ', '.join(plan.sites)} (its reason is in that site's own log)",
                                  site=(missing or [None])[0])
        from flwr.common import parameters_to_ndarrays

        update = parameters_to_ndarrays(summed[0])[0]
        record, validation = self._record(round_number, figures, None, None, started)
        record["secure_aggregation"] = True
        log.info("round %d/%d aggregated under SecAgg+: train loss %.4f, %.1f s", round_number, plan.rounds,
                 record["train_loss"], record["seconds"])
        return record, unflatten(flat + update, weights), validation

    def validate(self, grid: Grid, weights: dict) -> dict[str, dict]:
        """Ask every site to validate the final global weights; return each site's figures."""
        _, replies = self._exchange(grid, self.strategy.configure_evaluate(self.plan.rounds, to_record(weights), ConfigRecord(), grid))
        return {self.nodes[r.metadata.src_node_id]: dict(r.content[METRICS]) for r in replies}

    def _exchange(self, grid: Grid, messages) -> tuple[int, list[Message]]:
        """Send to the joined sites, wait for every reply; return the bytes sent and the replies in the plan's site order."""
        messages = [m for m in messages if m.metadata.dst_node_id in self.nodes]
        sent = sum(content_bytes(m) for m in messages)
        replies = send_and_receive(grid, messages, self.plan.round_timeout_s)
        failed = [r for r in replies if r.has_error()]
        if failed:
            reply = failed[0]
            site = self.nodes.get(reply.metadata.src_node_id, f"node {reply.metadata.src_node_id}")
            raise FederationError(reply.error.reason or f"site {site} failed (code {reply.error.code})", site=site)
        answered = {self.nodes[r.metadata.src_node_id] for r in replies}
        silent = [site for site in self.plan.sites if site not in answered]
        if silent:
            raise FederationError(f"no reply from site {', '.join(silent)} within {self.plan.round_timeout_s} s", site=silent[0])
        position = {site: i for i, site in enumerate(self.plan.sites)}
        return sent, sorted(replies, key=lambda r: position[self.nodes[r.metadata.src_node_id]])

    def _training_config(self) -> dict:
        """Return what decides the global weights: seed, network, training settings and the plan."""
        from omegaconf import OmegaConf

        return {"seed": int(self.cfg.seed), "model": OmegaConf.to_container(self.cfg.model, resolve=True),
                "train": OmegaConf.to_container(self.cfg.train, resolve=True), "reproducibility": str(self.cfg.reproducibility.cpu),
                "plan": {"sites": list(self.plan.sites), "rounds": self.plan.rounds, "local_epochs": self.plan.local_epochs,
                         "aggregation": self.plan.aggregation, "proximal_mu": self.plan.proximal_mu,
                         "differential_privacy": self.plan.privacy.as_dict() if self.plan.privacy else None,
                         "secure_aggregation": self.plan.secure}}

    def _saved_state(self, state_id: str) -> dict | None:
        """Return the state saved after the last completed round when it belongs to this plan and these sites' data, else None."""
        path = self.work / STATE_FILE
        if not path.is_file():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)  # our own file
        except Exception as err:  # a damaged state is not worth stopping for
            log.warning("ignoring unreadable state %s (%s); starting from round 1", path, err)
            return None
        if state.get("fingerprint") != state_id:
            log.info("state %s belongs to another plan or other data; starting from round 1", path)
            return None
        log.info("resuming from %s after round %d of %d", path, state["round"], self.plan.rounds)
        return state

    def _initial_state(self, state_id: str) -> dict:
        """Return round 0: the network the study's seed builds, as centralised training starts from."""
        facts = self.sites[self.plan.sites[0]]
        task = Task.from_dict(facts["task"])
        seed_everything(int(self.cfg.seed), self.cfg.train.deterministic, resolve_device("cpu"), False)
        net = build_network(fit_to_task(self.cfg.model.net, task.channels, task.outputs, task.spatial_dims,
                                        tuple(facts["image_shape"][1:])))
        if self.plan.privacy is not None and (problem := running_statistics_problem(net)):
            raise FederationError(f"differential privacy: {problem}")  # the trial's stage refuses this before it starts
        weights = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        return {"fingerprint": state_id, "round": 0, "epoch": 0, "weights": weights, "best": None, "history": [],
                "finished": False}


def running_statistics_problem(net: torch.nn.Module) -> str | None:
    """Return why differential privacy cannot protect `net` when it keeps running statistics (BatchNorm), else None."""
    tracked = [name for name, module in net.named_modules() if getattr(module, "track_running_stats", False)]
    if not tracked:
        return None
    return (f"the network keeps running statistics in {len(tracked)} normalisation layers ({tracked[0]}, ...), which the "
            "noise would reach too; use a norm without them, e.g. -S model=vit_tiny (LayerNorm; MONAI's ResNet blocks keep "
            "BatchNorm whatever model.net.norm says)")


def send_and_receive(grid: Grid, messages, timeout_s: float) -> list[Message]:
    """Push `messages` and return the replies that came within `timeout_s`: Flower's Grid.send_and_receive, but looking
    for replies after 0.1 s and then 1.5 times less often up to every 3 s (Flower's waits 3 s between looks), so a
    quick exchange (a join, a validation) is not held up and a long round costs no more requests."""
    waiting = set(grid.push_messages(messages))
    replies, pause, deadline = [], FIRST_POLL_S, time.monotonic() + timeout_s
    while waiting and time.monotonic() < deadline:
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        arrived = list(grid.pull_messages(waiting))
        replies += arrived
        waiting -= {reply.metadata.reply_to_message_id for reply in arrived}
        pause = min(pause * 1.5, LONGEST_POLL_S)
    return replies


def _better(value: float, best: float) -> bool:
    return not math.isnan(value) and (math.isnan(best) or value > best)


def _weighted(sites: dict[str, dict], key: str, weight: str) -> float:
    """Return the mean of a statistic over sites weighted by their image counts (sites where it is undefined left out)."""
    pairs = [(s[key], s[weight]) for s in sites.values() if not math.isnan(s[key])]
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total else float("nan")


def _site_in(reason: str | None) -> str | None:
    """Return the site code an error reason starts with ('site KR: ...'), if any."""
    if reason and reason.startswith("site ") and ":" in reason:
        return reason[5:reason.index(":")]
    return None
