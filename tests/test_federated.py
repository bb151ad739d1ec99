"""Federated training with Flower: the plan, the sites' data, a site's round, weights on the wire, and real processes.

The whole study through `dvc exp run -S train=federated` is in test_pipeline_e2e.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from conftest import run_stages, tiny_config
from crossmed.errors import ConfigError, InputError
from crossmed.federated.wire import from_record, to_record
from crossmed.federated.plan import FederationPlan
from crossmed.federated.site_data import load_site_data, write_site_folders
from crossmed.federated.site_training import RoundOrder, SiteTrainer

FEDERATED = ("train=federated", "study.external_sites=[]", "train.federated.rounds=1", "train.federated.local_epochs=1")


@pytest.fixture(scope="module")
def federated_study(tmp_path_factory):
    """A tiny study in which both sites train (no external site), through preprocess; returns its config."""
    cfg = tiny_config(tmp_path_factory.mktemp("federated"), *FEDERATED)
    run_stages(cfg, first="synthesize", through="preprocess")
    return cfg


def test_plan_takes_the_internal_sites_in_study_order(tmp_path):
    assert FederationPlan.from_config(tiny_config(tmp_path, "train=federated")).sites == ("KR",)  # EE is external
    plan = FederationPlan.from_config(tiny_config(tmp_path, "train=federated", "study.external_sites=[]", "study.sites=[EE,KR]"))
    assert plan.sites == ("EE", "KR") and plan.total_epochs == 30 and plan.aggregation == "fedavg"
    with pytest.raises(ConfigError, match="train.federated.sites.*XX"):
        FederationPlan.from_config(tiny_config(tmp_path, "train=federated", "train.federated.sites=[XX]"))
    with pytest.raises(ConfigError, match="train.federated.aggregation"):
        FederationPlan.from_config(tiny_config(tmp_path, "train=federated", "train.federated.aggregation=fedsgd"))
    with pytest.raises(ConfigError, match="proximal_mu"):
        FederationPlan.from_config(tiny_config(tmp_path, "train=federated", "train.federated.aggregation=fedprox",
                                               "train.federated.proximal_mu=0"))
    with pytest.raises(ConfigError, match="train.federated.superlink.*HOST:PORT"):
        FederationPlan.from_config(tiny_config(tmp_path, "train=federated", "train.federated.superlink=coordinator.example.org"))
    with pytest.raises(ConfigError, match="train.federated.superlink_ca.*TLS only"):  # weights never travel in the clear
        FederationPlan.from_config(tiny_config(tmp_path, "train=federated", "train.federated.superlink=coordinator.example.org:9092"))
    remote = FederationPlan.from_config(tiny_config(tmp_path, "train=federated", "train.federated.superlink=10.0.0.5:9092",
                                                    "train.federated.superlink_ca=ca.crt"))
    assert (remote.superlink, remote.superlink_ca) == ("10.0.0.5:9092", "ca.crt") and plan.superlink is None


def test_a_mistyped_federated_value_stops_composition(tmp_path):
    with pytest.raises(ConfigError, match="train.federated.rounds"):
        tiny_config(tmp_path, "train=federated", "train.federated.rounds=many")


def test_site_folders_hold_only_their_site(federated_study, tmp_path):
    folders = write_site_folders(federated_study.paths.processed, tmp_path, ("KR", "EE"))
    for site, folder in folders.items():
        data = load_site_data(folder, site)
        assert set(data.manifest["site"]) == {site}
        assert list(data.manifest["index"]) == list(range(len(data.manifest)))
        full = np.load(Path(federated_study.paths.processed) / "images.npy", mmap_mode="r")
        study_rows = pd.read_csv(Path(federated_study.paths.processed) / "manifest.csv", dtype=str)[["image_id", "index"]]
        source = data.manifest.merge(study_rows, on="image_id", suffixes=("", "_study"))
        assert np.array_equal(np.asarray(data.images), full[source["index_study"].astype(int).to_numpy()])
    with pytest.raises(InputError, match="site EE: holds images of other sites"):
        load_site_data(folders["KR"], "EE")


def test_a_missing_or_broken_site_folder_is_named(federated_study, tmp_path):
    with pytest.raises(InputError, match="site KR: no processed data folder") as missing:
        load_site_data(tmp_path / "nowhere", "KR")
    assert str(tmp_path / "nowhere") in str(missing.value)
    folder = write_site_folders(federated_study.paths.processed, tmp_path, ("KR",))["KR"]
    (folder / "images.npy").write_bytes((folder / "images.npy").read_bytes()[:200])
    with pytest.raises(InputError, match="site KR: cannot read the processed data"):
        load_site_data(folder, "KR")


def test_weights_travel_as_one_vector_and_come_back_exact():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(2, 3))
    net(torch.randn(2, 1, 4, 4))  # BatchNorm counts a batch: an integer buffer
    weights = net.state_dict()
    record = to_record(weights)
    assert len(record) == 1, "one array: Flower moves each array as its own object"
    back = from_record(record, weights)
    assert list(back) == list(weights)
    for name in weights:
        assert back[name].dtype == weights[name].dtype and torch.equal(back[name], weights[name]), name
    with pytest.raises(ValueError, match="this network has"):
        from_record(record, {"w": torch.zeros(3)})


def test_a_site_round_repeats_bitwise_and_fedprox_pulls_towards_the_global_weights(federated_study, tmp_path):
    cfg = federated_study.copy()
    folder = write_site_folders(federated_study.paths.processed, tmp_path, ("KR",))["KR"]
    trainer = SiteTrainer(cfg, "KR", folder)
    start = trainer.template()
    plain = RoundOrder(round_number=2, local_epochs=1, total_epochs=3)
    first, stats = trainer.train_round(start, plain)
    again, _ = SiteTrainer(cfg, "KR", folder).train_round(start, plain)
    assert all(torch.equal(first[k], again[k]) for k in first), "same weights, site, round and seed: same update"
    other_round, _ = trainer.train_round(start, RoundOrder(3, 1, 3))
    assert not all(torch.equal(first[k], other_round[k]) for k in first), "each round draws its own random stream"
    assert stats["train-images"] == len(trainer.train.labels) and stats["learning-rate"] < cfg.train.learning_rate
    prox, _ = trainer.train_round(start, RoundOrder(2, 1, 3, proximal_mu=100.0))

    def distance(weights):
        return sum(float((weights[k].float() - start[k].float()).pow(2).sum()) for k in start if start[k].is_floating_point())
    assert distance(prox) < distance(first), "the proximal term keeps a site's weights near the global ones"
    figures = trainer.validate(start)
    assert figures["val-images"] == len(trainer.val.labels) and 0.0 <= figures["val-auc"] <= 1.0


def test_trial_security_makes_a_loopback_certificate_and_owner_only_site_keys(tmp_path):
    from cryptography import x509

    from crossmed.federated.security import make_trial_security

    security = make_trial_security(tmp_path, ("KR", "EE"))
    ca = x509.load_pem_x509_certificate(security.ca_certificate.read_bytes())
    certificate = x509.load_pem_x509_certificate(security.certificate.read_bytes())
    certificate.verify_directly_issued_by(ca)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}, "the SuperLink's --host"
    for site in ("KR", "EE"):
        assert security.site_keys[site].stat().st_mode & 0o777 == 0o600
        assert security.public_key(site).read_text().startswith("ecdsa-sha2-nistp384 "), "Flower takes NIST-curve ECDSA keys"
    assert security.private_key.stat().st_mode & 0o777 == 0o600


def test_the_model_card_says_which_round_of_which_federation_it_exports():
    from crossmed.reporting.model_card import _trained_at

    federated = {"sites": ["KR", "EE"], "rounds": 10, "local_epochs": 3, "aggregation": "fedprox", "best_round": 7}
    assert _trained_at({"epoch": 21, "federated": federated}) == (
        "round 7 of 10 (epoch 21) of federated training (fedprox) across sites KR, EE, whose images never left them")
    assert _trained_at({"epoch": 12}) == "epoch 12"


def _wait_for(path: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.is_file():
        assert time.monotonic() < deadline, f"{path} did not appear within {seconds} s"
        time.sleep(1)


class _SitesOnAGrid:
    """Flower's Grid as the coordinator sees it (push, then pull), answered in-process: site i sends back the weights
    plus (i + 1)."""

    def __init__(self):
        from flwr.supercore.task_identity import TaskIdentity

        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1  # what a ServerApp process has set

    def get_node_ids(self):
        return [11, 22]

    def push_messages(self, messages):
        from flwr.app import Message, MetricRecord, RecordDict

        from crossmed.federated.messages import ARRAYS, METRICS, UNIT_WEIGHT_KEY, WEIGHT_KEY
        from in_process_federation import answer_on

        def answer(message, i):
            weights = {"w": torch.from_numpy(message.content[ARRAYS]["weights"].numpy().copy()) + (i + 1)}
            figures = {"train-loss": 0.5, "train-images": 10 * (i + 1), "seconds": 1.0, "learning-rate": 0.001,
                       "val-loss": 0.6, "val-auc": 0.7, "val-images": 5, WEIGHT_KEY: 10 * (i + 1), UNIT_WEIGHT_KEY: 1}
            return Message(RecordDict({ARRAYS: to_record(weights), METRICS: MetricRecord(figures)}), reply_to=message)

        return [answer_on(self, message, lambda m, i=i: answer(m, i)) for i, message in enumerate(messages)]

    def pull_messages(self, message_ids):
        from in_process_federation import pull_from

        return pull_from(self, message_ids)


def test_replies_are_looked_for_soon_then_less_often_and_a_silent_site_is_left_at_the_timeout():
    from types import SimpleNamespace

    from crossmed.federated.coordinator import send_and_receive

    class OneSiteAnswers:
        """KR's reply is there at the first look; EE never answers."""

        def __init__(self):
            self.looks, self.started = [], time.monotonic()

        def push_messages(self, messages):
            return [f"to-{m}" for m in messages]

        def pull_messages(self, ids):
            self.looks.append(time.monotonic() - self.started)
            return [SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id="to-KR"))] if "to-KR" in ids else []

    grid = OneSiteAnswers()
    replies = send_and_receive(grid, ["KR", "EE"], timeout_s=2.5)
    assert [r.metadata.reply_to_message_id for r in replies] == ["to-KR"]
    # First look after 0.1 s, then 1.5 times longer each time: 0.1, 0.25, 0.48, 0.81, 1.32, 2.08, then the deadline
    # (Flower's own loop looks every 3 s: one look in this time). Loose bounds: a busy machine oversleeps.
    assert grid.looks[0] < 0.5 and 4 <= len(grid.looks) <= 8 and 2.4 < grid.looks[-1] < 3.5, grid.looks


def test_a_refused_status_call_names_the_coordinator_that_is_still_dying(tmp_path, monkeypatch):
    """The coordinator killed between the liveness check and `flwr ls`: the refused call waits for the exit to show and
    says the coordinator process exited (so a rerun is asked for), rather than "connection unavailable"."""
    from crossmed.errors import CrossmedError
    from crossmed.federated.processes import LocalFederation, Process, ProcessExited

    federation = LocalFederation(tmp_path, {})
    dying = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])
    federation.processes.append(Process("coordinator", dying, tmp_path / "coordinator.log"))

    def refused(*args, **kwargs):
        raise CrossmedError("`flwr ls` failed: Connection to the SuperLink is unavailable.")

    monkeypatch.setattr(federation, "_cli", refused)
    with pytest.raises(ProcessExited, match="the coordinator process exited") as raised:
        federation.status(1)
    assert raised.value.site is None
    federation.processes[0] = Process("coordinator", subprocess.Popen(["sleep", "30"]), tmp_path / "coordinator.log")
    monkeypatch.setattr("crossmed.federated.processes.EXIT_GRACE_S", 0.5)
    try:
        with pytest.raises(CrossmedError, match="SuperLink is unavailable"):  # nothing exited: the call's own error
            federation.status(1)
    finally:
        federation.processes[0].popen.kill()
        federation.processes[0].popen.wait()
    dying.wait()


def test_differential_privacy_clips_each_site_adds_seeded_noise_and_counts_epsilon(tmp_path):
    from crossmed.federated.coordinator import Coordinator, FederationError
    from crossmed.stages.federated_train import _check_no_running_statistics

    dp = "train.federated.differential_privacy"
    cfg = tiny_config(tmp_path, *FEDERATED, f"{dp}.enabled=true", f"{dp}.clipping_norm=0.5", f"{dp}.noise_multiplier=1.0")
    start = {"w": torch.zeros(4000)}

    def one_round(config):
        coordinator = Coordinator(config, tmp_path / "work")
        coordinator.nodes = {11: "KR", 22: "EE"}
        record, weights, _ = coordinator.run_round(_SitesOnAGrid(), 1, start)
        return record, weights["w"].numpy()

    record, first = one_round(cfg)
    _, again = one_round(cfg)
    assert np.array_equal(first, again)  # the noise is seeded by (seed, round): a rerun gives the same global weights
    # Updates of L2 norm 63 and 126 are clipped to 0.5 each: their mean is ~0.008 per value, not 1.5; the noise's
    # standard deviation is z * C / sites = 0.25.
    assert abs(first.mean()) < 0.05 and first.std() == pytest.approx(0.25, rel=0.1)
    assert record["epsilon"] == pytest.approx(3.5366, abs=1e-3) and record["delta"] == 1e-3  # z = 1, one release

    capped = OmegaConf.merge(cfg, {"train": {"federated": {"differential_privacy": {"max_epsilon": 2.0}}}})
    with pytest.raises(FederationError, match="max_epsilon"):
        one_round(capped)
    with pytest.raises(ConfigError, match="secure_aggregation"):  # not together yet
        FederationPlan.from_config(OmegaConf.merge(cfg, {"train": {"federated": {"secure_aggregation": {"enabled": True}}}}))
    with pytest.raises(ConfigError, match="noise_multiplier"):
        FederationPlan.from_config(OmegaConf.merge(cfg, {"train": {"federated": {"differential_privacy": {"noise_multiplier": 0}}}}))
    net = {**OmegaConf.to_container(cfg.model.net), "n_input_channels": 1, "num_classes": 2}
    with pytest.raises(ConfigError, match="keeps running statistics in 12 normalisation layers"):
        _check_no_running_statistics(net)
    # MONAI's ResNet takes norm=("group", {...}) (as -S 'model.net.norm=[group,{num_groups:8}]' gives) for its stem
    # only: its blocks keep BatchNorm, and are refused too. A ViT (LayerNorm) keeps no running statistics.
    with pytest.raises(ConfigError, match="11 normalisation layers \\(layer1.0.bn1"):
        _check_no_running_statistics({**net, "norm": ["group", {"num_groups": 8}]})
    vit = tiny_config(tmp_path, *FEDERATED, "model=vit_tiny").model.net
    _check_no_running_statistics({**OmegaConf.to_container(vit), "img_size": [32, 32], "in_channels": 1, "num_classes": 2})


@pytest.mark.slow
def test_over_tls_only_registered_sites_join_and_a_broken_site_is_named_by_a_coordinator_that_cannot_see_site_folders(
        federated_study, tmp_path):
    """Real SuperLink and SuperNodes over TLS with site authentication: processes with an unregistered key or none are
    refused; EE's data is broken, so the run fails at the join and the coordinator names EE and the missing file."""
    from crossmed.federated.coordinator import FAILURE_FILE
    from crossmed.federated.messages import STUDY_CONFIG_KEY, WORK_DIR_KEY, encode_study_config
    from crossmed.federated.processes import LocalFederation, Process, can_hide_folders
    from crossmed.federated.security import make_site_key, make_trial_security

    cfg = federated_study.copy()
    folders = write_site_folders(federated_study.paths.processed, tmp_path / "sites", ("KR", "EE"))
    (folders["EE"] / "labels.npy").unlink()
    work = tmp_path / "work"
    hide = can_hide_folders()
    security = make_trial_security(tmp_path / "security", ("KR", "EE"))
    # EE's process is the trial's; KR joins as a hospital would, with `crossmed site join` and its registered key.
    with LocalFederation(tmp_path / "processes", {"EE": folders["EE"]}, hide_site_data=hide, security=security) as federation, \
            open(tmp_path / "KR.log", "wb") as kr_log:
        federation.register("KR", security.public_key("KR"))
        kr = subprocess.Popen([str(Path(sys.executable).parent / "crossmed"), "site", "join", "--site", "KR", "--data",
                               str(folders["KR"]), "--coordinator", f"127.0.0.1:{federation.port}", "--ca",
                               str(security.ca_certificate), "--key", str(security.site_keys["KR"]), "--home",
                               str(tmp_path / "KR-home")], stdout=kr_log, stderr=subprocess.STDOUT, start_new_session=True)
        federation.processes.append(Process("site-KR", kr, tmp_path / "KR.log"))  # stopped with the federation
        # Only registered sites are admitted: a process with an unknown key, and one with none, are refused.
        intruders = [federation.start_site("KR", folders["KR"], make_site_key(tmp_path / "intruder", "XX"), name="intruder"),
                     federation.start_site("KR", folders["KR"], None, name="keyless")]
        for intruder in intruders:
            intruder.popen.wait(timeout=120)
            assert intruder.popen.returncode != 0, intruder.tail()
        assert "Failed to activate SuperNode" in intruders[0].tail(40)
        if hide:  # what the coordinator sees of a site folder: nothing (its own mount namespace)
            link = federation.processes[0].popen.pid
            assert sorted(os.listdir(folders["EE"])) and os.listdir(f"/proc/{link}/root{folders['EE']}") == []
        run_id = federation.submit({STUDY_CONFIG_KEY: encode_study_config(cfg), WORK_DIR_KEY: str(work)})
        _wait_for(work / FAILURE_FILE, 240)
        failure = json.loads((work / FAILURE_FILE).read_text())
        assert failure["site"] == "EE" and "labels.npy" in failure["reason"] and str(folders["EE"]) in failure["reason"]
        deadline = time.monotonic() + 60
        while not (status := federation.status(run_id)).get("status", "").startswith("finished"):
            assert time.monotonic() < deadline
            time.sleep(2)
        assert status["status"] == "finished:failed"
    assert "site EE" in (tmp_path / "processes" / "logs" / "site-EE.log").read_text(), "the site's own log has the traceback"
    # The coordinator asks only once both sites are connected: reaching EE's failure means KR's process was admitted.
    kr_said = (tmp_path / "KR.log").read_text()
    assert re.search(r"site KR: \d+ training and \d+ validation images", kr_said), kr_said[-2000:]
    assert "joining the coordinator at 127.0.0.1" in kr_said


def test_site_commands_make_a_key_pair_once_and_name_a_broken_folder_before_connecting(federated_study, tmp_path, capfd):
    from crossmed.cli import main

    assert main(["site", "key", "--site", "KR", "--out", str(tmp_path / "keys")]) == 0
    assert (tmp_path / "keys" / "KR.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys" / "KR.key.pub").read_text().startswith("ecdsa-sha2-nistp384 ")
    assert main(["site", "key", "--site", "KR", "--out", str(tmp_path / "keys")]) == 2  # never overwritten
    folders = write_site_folders(federated_study.paths.processed, tmp_path / "sites", ("KR", "EE"))
    (folders["EE"] / "labels.npy").unlink()
    started = time.monotonic()
    # Port 9 (discard) on loopback: nothing answers there, and nothing is asked: the folder is checked first.
    assert main(["site", "join", "--site", "EE", "--data", str(folders["EE"]), "--coordinator", "127.0.0.1:9", "--insecure",
                 "--home", str(tmp_path / "home")]) == 2
    assert time.monotonic() - started < 30 and not (tmp_path / "home").exists()
    assert main(["site", "join", "--site", "KR", "--data", str(folders["KR"]), "--coordinator", "127.0.0.1:9"]) == 2
    said = capfd.readouterr().err
    assert f"{folders['EE'] / 'labels.npy'}" in said and "give --ca" in said and "exists; a site's key is never overwritten" in said


def _stage_config(study, root: Path, rounds: int = 2, secure: bool = False) -> Path:
    """Write the study's config for a federation (two rounds) with every training output under `root`; return the file."""
    cfg = study.copy()
    cfg.train.federated.rounds = rounds
    cfg.train.federated.secure_aggregation.enabled = secure
    cfg.train.federated.tls = False  # TLS and site keys have their own test; these runs are about rounds
    cfg.paths.checkpoint, cfg.paths.history = str(root / "checkpoint.pt"), str(root / "history.csv")
    cfg.paths.training_run, cfg.paths.federation = str(root / "run.json"), str(root / "federation")
    root.mkdir(parents=True)
    OmegaConf.save(cfg, root / "config.yaml")
    return root / "config.yaml"


def _train(config: Path, kill: str | None = None) -> tuple[int, str]:
    """Run the train stage in its own process (portable arithmetic, as under DVC); optionally SIGKILL one of the
    federation's processes (with its children) mid-run: kill="site-EE" once round 1 is saved (so during round 2),
    kill="coordinator" once the coordinator has resumed from saved state. Return the stage's exit code and log."""
    stage = subprocess.Popen([sys.executable, "-m", "crossmed.stages", "train", str(config)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if kill:
        work = Path(OmegaConf.load(config).paths.federation) / "coordinator"
        progress, coordinator_log = work / "progress.json", work / "coordinator.log"
        if kill == "coordinator":
            ready = lambda: coordinator_log.is_file() and "resuming from" in coordinator_log.read_text()  # noqa: E731
        else:
            ready = lambda: progress.is_file() and json.loads(progress.read_text())["history"]  # noqa: E731
        deadline = time.monotonic() + 400
        while not ready():
            assert stage.poll() is None and time.monotonic() < deadline, f"never got to the point of killing the {kill}"
            time.sleep(0.5)
        pids = json.loads((work.parent / "processes" / "pids.json").read_text())
        os.killpg(pids[kill], signal.SIGKILL)
    output, _ = stage.communicate(timeout=900)
    return stage.returncode, output


def _in_process_reference(config: Path, work: Path) -> dict:
    """Return the result of the same federation computed in one process (tests/in_process_federation.py) in the
    stage's portable arithmetic: the coordinator and the real ClientApp, no SuperLink, no site processes."""
    from crossmed.reproducibility import PORTABLE_ENV

    done = subprocess.run([sys.executable, str(Path(__file__).parent / "in_process_federation.py"), str(config), str(work)],
                          capture_output=True, text=True, env={**os.environ, **PORTABLE_ENV}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(done.stdout.strip(), map_location="cpu", weights_only=False)


@pytest.mark.slow
def test_a_site_killed_mid_round_stops_the_run_and_a_rerun_resumes_to_the_uninterrupted_weights(federated_study, tmp_path):
    """Two rounds with site EE killed during round 2, the stage run again and its coordinator killed once it has
    resumed, and the stage run a third time: the last run continues after round 1 and ends with the weights and
    history of the same two rounds computed uninterrupted in one process, bit for bit (so the real processes add
    nothing but transport, and resuming loses nothing)."""
    from crossmed.stages.federated_train import HISTORY_FIELDS
    from crossmed.stages.train import write_history

    cut = _stage_config(federated_study, tmp_path / "cut")
    code, output = _train(cut, kill="site-EE")
    assert code != 0 and "the site EE process exited" in output and "continue after round 1" in output, output[-3000:]
    assert not (tmp_path / "cut" / "checkpoint.pt").exists(), "nothing half-written"
    code, output = _train(cut, kill="coordinator")
    assert code != 0 and "the coordinator process exited" in output and "continue after round 1" in output, output[-3000:]
    assert not (tmp_path / "cut" / "checkpoint.pt").exists()
    code, output = _train(cut)
    assert code == 0, output[-3000:]
    assert "the coordinator continues after round 1 of 2" in output
    assert "after round 1 of 2" in (tmp_path / "cut" / "federation" / "coordinator" / "coordinator.log").read_text()
    assert not (tmp_path / "cut" / "federation" / "processes" / "pids.json").exists(), "no process left running"
    resumed = torch.load(tmp_path / "cut" / "checkpoint.pt", map_location="cpu", weights_only=True)
    reference = _in_process_reference(cut, tmp_path / "reference")
    assert resumed["federated"] == {"sites": ["KR", "EE"], "rounds": 2, "local_epochs": 1, "aggregation": "fedavg",
                                    "best_round": reference["best_round"]}
    assert set(resumed["state_dict"]) == set(reference["weights"])
    assert all(torch.equal(resumed["state_dict"][k], reference["weights"][k]) for k in reference["weights"])
    write_history(tmp_path / "reference.csv", [{k: r.get(k) for k in HISTORY_FIELDS} for r in reference["history"]])
    assert (tmp_path / "reference.csv").read_text() == (tmp_path / "cut" / "history.csv").read_text()


@pytest.mark.slow
def test_secure_aggregation_gives_the_weighted_mean_of_the_sites_rounds(federated_study, tmp_path):
    """One round under SecAgg+ through real processes: the global weights are FedAvg's (the sites' trained weights,
    weighted by their training images) to within SecAgg+'s quantisation, though the coordinator saw only masked sums."""
    from crossmed.federated.coordinator import Coordinator
    from crossmed.federated.site_data import site_summary

    config = _stage_config(federated_study, tmp_path / "secure", rounds=1, secure=True)
    code, output = _train(config)
    assert code == 0, output[-3000:]
    assert "aggregated under SecAgg+" in (tmp_path / "secure" / "federation" / "coordinator" / "coordinator.log").read_text()
    checkpoint = torch.load(tmp_path / "secure" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert checkpoint["federated"]["secure_aggregation"] == "SecAgg+"

    cfg = OmegaConf.load(config)
    folders = write_site_folders(cfg.paths.processed, tmp_path / "reference", ("KR", "EE"))
    coordinator = Coordinator(cfg, tmp_path / "reference" / "work")
    for site, folder in folders.items():
        counts, facts = site_summary(load_site_data(folder, site), folder)
        coordinator.sites[site] = {**counts, **facts}
    start = coordinator._initial_state("reference")["weights"]  # the network the coordinator starts from
    rounds = [SiteTrainer(cfg, site, folder).train_round(start, RoundOrder(1, 1, 1)) for site, folder in folders.items()]
    total = sum(stats["train-images"] for _, stats in rounds)
    secure, keys = checkpoint["state_dict"], [k for k, v in start.items() if v.is_floating_point()]
    expected = {k: sum(weights[k] * stats["train-images"] for weights, stats in rounds) / total for k in keys}
    off = max(float((secure[k] - expected[k]).abs().max()) for k in keys)
    unweighted = max(float((secure[k] - (rounds[0][0][k] + rounds[1][0][k]) / 2).abs().max()) for k in keys)
    # Near FedAvg's weighted mean (the sites trained here in-process with native kernels, the stage's in portable
    # arithmetic, which drifts by ~1e-3 in an epoch of Adam; SecAgg+'s quantisation adds ~1e-6), and far from the
    # plain mean of the two sites' weights (KR has twice EE's images).
    assert off < 5e-3 and unweighted > 10 * off, (off, unweighted)


@pytest.mark.slow
def test_the_train_stage_submits_to_a_running_coordinator_that_the_sites_joined(federated_study, tmp_path, monkeypatch):
    """A real deployment on loopback: a SuperLink already runs (TLS, registered site keys), each site joins it with
    `crossmed site join` from its own folder, and the train stage, in a checkout with no data at all, submits to it
    (train.federated.superlink). The checkpoint holds the weights of the same round computed in one process, bit for bit
    (so a deployment trains what the trial trains); its data facts and the MLflow data tags come from the sites' reports."""
    from crossmed.federated.processes import LocalFederation, Process
    from crossmed.federated.security import make_trial_security
    from crossmed.reproducibility import PORTABLE_ENV

    reference_config = _stage_config(federated_study, tmp_path / "reference", rounds=1)
    remote = OmegaConf.load(reference_config)
    folders = write_site_folders(federated_study.paths.processed, tmp_path / "hospitals", ("KR", "EE"))
    security = make_trial_security(tmp_path / "security", ("KR", "EE"))
    remote.paths.processed = str(tmp_path / "no-data-here")  # the coordinator holds none of the sites' data
    for name in ("checkpoint", "history", "training_run"):
        remote.paths[name] = str(tmp_path / "coordinator" / Path(remote.paths[name]).name)
    remote.paths.federation = str(tmp_path / "coordinator" / "federation")
    for key, value in PORTABLE_ENV.items():  # the operator starts the SuperLink with the study's CPU arithmetic
        monkeypatch.setenv(key, value)
    with LocalFederation(tmp_path / "superlink", {}, security=security) as coordinator:  # the SuperLink alone
        for site in ("KR", "EE"):
            coordinator.register(site, security.public_key(site))
            log_file = open(tmp_path / f"{site}.log", "wb")
            joined = subprocess.Popen([str(Path(sys.executable).parent / "crossmed"), "site", "join", "--site", site, "--data",
                                       str(folders[site]), "--coordinator", f"127.0.0.1:{coordinator.port}", "--ca",
                                       str(security.ca_certificate), "--key", str(security.site_keys[site]), "--home",
                                       str(tmp_path / f"{site}-home")], stdout=log_file, stderr=subprocess.STDOUT,
                                      start_new_session=True)
            log_file.close()
            coordinator.processes.append(Process(f"site-{site}", joined, tmp_path / f"{site}.log"))
        remote.train.federated.superlink = f"127.0.0.1:{coordinator.port}"
        remote.train.federated.superlink_ca = str(security.ca_certificate)
        (tmp_path / "coordinator").mkdir()
        OmegaConf.save(remote, tmp_path / "coordinator" / "config.yaml")
        code, output = _train(tmp_path / "coordinator" / "config.yaml")
    assert code == 0, output[-3000:]
    assert f"coordinator at 127.0.0.1:{coordinator.port} (TLS)" in output and "site process(es)" not in output
    assert not Path(remote.paths.processed).exists() and not (tmp_path / "coordinator" / "federation" / "site_data").exists()
    for site in ("KR", "EE"):
        assert "portable CPU arithmetic" in (tmp_path / f"{site}.log").read_text()
    trained = torch.load(remote.paths.checkpoint, map_location="cpu", weights_only=True)
    reference = _in_process_reference(reference_config, tmp_path / "in_process")
    assert all(torch.equal(trained["state_dict"][k], reference["weights"][k]) for k in reference["weights"])
    assert set(trained["state_dict"]) == set(reference["weights"])
    local = _checkpoint_data_facts(federated_study.paths.processed)
    assert {k: trained[k] for k in ("task", "input_shape", "preprocessing", "recipe")} == local
    import mlflow

    run_id = json.loads(Path(remote.paths.training_run).read_text())["run_id"]
    run = mlflow.MlflowClient(tracking_uri=remote.mlflow.tracking_uri).get_run(run_id)
    assert run.data.tags["federated.coordinator"] == remote.train.federated.superlink
    assert run.data.tags["study.sites"] == "KR,EE" and re.fullmatch(r"[0-9a-f]{64}", run.data.tags["data.sha256"])
    assert run.info.status == "FINISHED" and "round/val_auc" in run.data.metrics


def _checkpoint_data_facts(folder) -> dict:
    """Return what a checkpoint records of the data in `folder` (task, input shape, preprocessing, recipe)."""
    from crossmed.data.processed import ProcessedData
    from crossmed.stages.train import data_facts

    facts = data_facts(ProcessedData.load(folder))
    return {"task": facts["task"], "input_shape": facts["image_shape"], "preprocessing": facts["preprocessing"],
            "recipe": facts["recipe"]}
