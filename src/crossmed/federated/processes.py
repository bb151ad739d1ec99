"""A federation on this machine (a Flower SuperLink, the coordinator, and one SuperNode per site, as real processes),
or the connection to a coordinator that already runs elsewhere (RemoteFederation).

Each process gets its own FLWR_HOME and log file under the federation's folder; ports are free loopback ports. The
`flwr` CLI submits the run and reports its status. Flower starts the ServerApp and each round's ClientApp as
children of these processes (found on PATH, so this environment's bin folder goes first), and inherits their
environment: the portable CPU settings of the train stage reach every site's training.
"""

import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from crossmed.errors import CrossmedError
from crossmed.federated.security import Security
from crossmed.federated.site_process import OFFLINE_ENV, supernode_command
from crossmed.files import write_json_atomic
from crossmed.ports import free_port, listening

log = logging.getLogger("crossmed.federated")
CONNECTION = "crossmed"  # the CLI's name for the SuperLink connection
APP_DIR = Path(__file__).resolve().parent / "flower_app"
START_TIMEOUT_S = 60
FINISHED = "finished:"
PIDS_FILE = "pids.json"  # the running processes, so a later run can stop what a killed one left
EXIT_GRACE_S = 5.0  # how long a failed call to the SuperLink waits for the process that broke it to be seen exiting


@dataclass
class Process:
    """One long-running process of the federation: what it is, its handle and its log file."""

    name: str
    popen: subprocess.Popen
    log_path: Path

    def tail(self, lines: int = 20) -> str:
        """Return the last lines of its log."""
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def can_hide_folders() -> bool:
    """True when this process may start others in a mount namespace of their own (root, and `unshare` is there)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True).returncode == 0


def _hidden(command: list[str], folders: list[Path]) -> list[str]:
    """Return `command` run in a new mount namespace where each of `folders` is an empty read-only tmpfs."""
    mounts = " && ".join(f"mount -t tmpfs -o ro,size=4k crossmed-hidden {shlex.quote(str(f))}" for f in folders)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", f'{mounts} && exec "$@"', "hide", *command]


class SuperLinkControl:
    """The `flwr` CLI pointed at one SuperLink (a coordinator): submit crossmed's app, follow a run, register sites.

    Subclasses give `root` (where the CLI keeps its config), `bin` (the folder of the flwr executables), `env` and
    `check_alive` (which names a process of theirs that has exited).
    """

    root: Path
    bin: Path

    def env(self, home: Path) -> dict:
        """Return the environment of a Flower process with its own FLWR_HOME."""
        home.mkdir(parents=True, exist_ok=True)
        return {**os.environ, **OFFLINE_ENV, "FLWR_HOME": str(home), "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"}

    def connect(self, address: str, ca_certificate: str | Path | None) -> None:
        """Write the CLI's connection to the SuperLink at `address` (HOST:PORT): TLS trusting `ca_certificate`, else plain."""
        connection = {"address": address}
        connection.update({"root-certificates": str(Path(ca_certificate).resolve())} if ca_certificate else {"insecure": True})
        cli_home = self.root / "cli"
        cli_home.mkdir(parents=True, exist_ok=True)
        (cli_home / "config.toml").write_text(tomli_w.dumps({"superlink": {"default": CONNECTION, CONNECTION: connection}}))

    def check_alive(self, wait_s: float = 0.0) -> None:
        """Raise ProcessExited when a process this side started has exited (none here)."""

    def _cli(self, *args: str, timeout: int = 120) -> dict:
        """Run `flwr ARGS --format json` against this federation's SuperLink and return its JSON answer."""
        done = subprocess.run([str(self.bin / "flwr"), *args, "--format", "json"], env=self.env(self.root / "cli"),
                              capture_output=True, text=True, timeout=timeout)
        try:
            answer = json.loads(done.stdout[done.stdout.index("{"):])
        except ValueError:
            raise CrossmedError(f"`flwr {' '.join(args)}` answered no JSON (exit {done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}") from None
        if not answer.get("success", True):
            raise CrossmedError(f"`flwr {' '.join(args)}` failed: {answer.get('error-message', answer)}")
        return answer

    def submit(self, run_config: dict) -> int:
        """Submit crossmed's Flower app with `run_config` (its keys as in the app's pyproject); return the run ID."""
        config_file = self.root / "coordinator" / "run_config.toml"
        config_file.parent.mkdir(parents=True, exist_ok=True)
        config_file.write_text(tomli_w.dumps(run_config), encoding="utf-8")
        answer = self._cli("run", str(APP_DIR), CONNECTION, "--run-config", str(config_file))
        run_id = int(answer["run-id"])
        log.info("submitted federated run %d", run_id)
        return run_id

    def status(self, run_id: int) -> dict:
        """Return the run's status entry from `flwr ls` (status, status-details, network traffic)."""
        try:
            runs = self._cli("ls", CONNECTION, "--run-id", str(run_id))["runs"]
        except CrossmedError:
            self.check_alive(wait_s=EXIT_GRACE_S)  # a coordinator killed since the last check: name it, not the refused call
            raise
        return runs[0] if runs else {}

    def stop_run(self, run_id: int) -> None:
        """Ask the SuperLink to stop run `run_id` (`flwr stop`); log, do not raise, when it cannot be reached."""
        try:
            self._cli("stop", str(run_id), CONNECTION, timeout=30)
            log.info("stopped federated run %d at the coordinator", run_id)
        except (CrossmedError, subprocess.TimeoutExpired) as err:
            log.warning("could not stop federated run %d at the coordinator: %s", run_id, err)



@dataclass
class LocalFederation(SuperLinkControl):
    """A SuperLink and one SuperNode per site (site -> its processed data folder), started on loopback under `root`.

    hide_site_data: start the coordinator in a mount namespace where every site's folder is empty, so it (and the
    ServerApp it starts) cannot read a site's files even by mistake (needs root; see can_hide_folders).
    security: TLS between the sites and the coordinator, and (with site keys) only registered sites admitted.
    """

    root: Path
    sites: dict[str, Path]
    hide_site_data: bool = False
    security: Security | None = None
    processes: list[Process] = field(default_factory=list)
    port: int = 0

    def __post_init__(self):
        self.root = Path(self.root).resolve()
        self.bin = Path(sys.executable).parent

    def _start(self, name: str, args: list[str], home: Path, hide: list[Path] | None = None) -> Process:
        log_path = self.root / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [str(self.bin / args[0]), *args[1:]]
        with open(log_path, "ab") as out:
            popen = subprocess.Popen(_hidden(command, hide) if hide else command, env=self.env(home), stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        process = Process(name, popen, log_path)
        self.processes.append(process)
        return process

    def __enter__(self) -> "LocalFederation":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """Start the SuperLink, wait until it listens, register the sites' keys (TLS with authentication), then start
        one SuperNode per site; write the CLI's connection."""
        stop_leftovers(self.root / PIDS_FILE)
        self.port = free_port()
        security = self.security
        transport = (["--ssl-ca-certfile", str(security.ca_certificate), "--ssl-certfile", str(security.certificate),
                      "--ssl-keyfile", str(security.private_key), *(["--enable-supernode-auth"] if security.site_keys else [])]
                     if security else ["--insecure"])
        # No --database: the SuperLink keeps its state in memory, so a restarted federation starts without the nodes of
        # a killed one (they would be sent the join and never answer). Resuming is the coordinator's own state.
        link = self._start("coordinator", ["flower-superlink", *transport, "--host", "127.0.0.1", "--port", str(self.port),
                                           "--disable-runtime-dependency-installation"], self.root / "coordinator" / "flwr",
                           hide=[Path(f).resolve() for f in self.sites.values()] if self.hide_site_data else None)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not listening(self.port):
            if link.popen.poll() is not None or time.monotonic() > deadline:
                raise CrossmedError(f"the coordinator (Flower SuperLink) did not start on 127.0.0.1:{self.port}; "
                                    f"its log {link.log_path} ends:\n{link.tail()}")
            time.sleep(0.3)
        self.connect(f"127.0.0.1:{self.port}", security.ca_certificate if security else None)
        for site in self.sites:
            if security and site in security.site_keys:
                self.register(site, security.public_key(site))
        for site, folder in self.sites.items():
            self.start_site(site, folder, security.site_keys.get(site) if security else None)
        write_json_atomic(self.root / PIDS_FILE, {p.name: p.popen.pid for p in self.processes})
        log.info("coordinator on 127.0.0.1:%d (%s)%s, %d site process(es) (%s); logs in %s", self.port,
                 ("TLS, registered sites only" if security.site_keys else "TLS") if security else "no TLS",
                 ", the site folders empty in its mount namespace" if self.hide_site_data else "", len(self.sites),
                 ", ".join(self.sites), self.root / "logs")

    def register(self, site: str, public_key: Path) -> int:
        """Admit a site's public key to the federation (`flwr supernode register`); return the node ID it will have."""
        answer = self._cli("supernode", "register", str(public_key), CONNECTION, "--name", site)
        log.info("registered site %s's key %s", site, public_key)
        return int(answer.get("node-id", 0))

    def start_site(self, site: str, folder: str | Path, private_key: Path | None = None, name: str | None = None) -> Process:
        """Start a SuperNode for `site` reading `folder`: over TLS when the federation has it, signing in with `private_key`."""
        command = supernode_command(site, folder, f"127.0.0.1:{self.port}", free_port(),
                                    self.security.ca_certificate if self.security else None, private_key)
        return self._start(name or f"site-{site}", command, self.root / "sites" / (name or site) / "flwr")

    def check_alive(self, wait_s: float = 0.0) -> None:
        """Raise ProcessExited naming the first of the federation's processes that has exited (a site, or the coordinator).

        With `wait_s`, keep looking that long: a process being killed can still be running when the call it broke fails.
        """
        deadline = time.monotonic() + wait_s
        while self._first_exited() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        process = self._first_exited()
        if process is not None:
            raise ProcessExited(f"the {process.name.replace('-', ' ')} process exited (code {process.popen.returncode}); "
                                f"its log {process.log_path} ends:\n{process.tail()}",
                                site=process.name.removeprefix("site-") if process.name.startswith("site-") else None)

    def _first_exited(self) -> "Process | None":
        """Return the first of the federation's processes that has exited, or None."""
        for process in self.processes:
            if process.popen.poll() is not None:
                return process
        return None

    def stop(self) -> None:
        """Stop every process and its children (SIGTERM, then SIGKILL after 10 s)."""
        for process in self.processes:
            if process.popen.poll() is None:
                _signal_group(process.popen, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.processes:
            try:
                process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(process.popen, signal.SIGKILL)  # children Flower started (ServerApp, ClientApps, superexec)
            process.popen.wait()
        self.processes.clear()
        (self.root / PIDS_FILE).unlink(missing_ok=True)


@dataclass
class RemoteFederation(SuperLinkControl):
    """A coordinator (Flower SuperLink) that already runs, which the sites joined with `crossmed site join`.

    Nothing is started here: crossmed's app is submitted to it. Its ServerApp runs at the SuperLink and writes its
    state and result in the work folder the run config names, so submit from the SuperLink's machine.
    """

    root: Path
    address: str
    ca_certificate: Path | None = None

    def __post_init__(self):
        self.root = Path(self.root).resolve()
        self.bin = Path(sys.executable).parent

    def check_reachable(self) -> None:
        """Write the CLI's connection and ask the SuperLink for its runs; raise CrossmedError saying why it cannot be reached."""
        self.connect(self.address, self.ca_certificate)
        try:
            self._cli("ls", CONNECTION, timeout=60)
        except (CrossmedError, subprocess.TimeoutExpired) as err:
            raise CrossmedError(f"cannot reach the coordinator (Flower SuperLink) at {self.address}"
                                f"{' trusting ' + str(self.ca_certificate) if self.ca_certificate else ''}: {err}") from None

    def __enter__(self) -> "RemoteFederation":
        self.check_reachable()
        log.info("coordinator at %s (%s); the sites joined it themselves", self.address,
                 "TLS" if self.ca_certificate else "no TLS")
        return self

    def __exit__(self, *exc) -> None:
        pass


class ProcessExited(CrossmedError):
    """A process of the federation ended while the run was going on: `site` names the site, None for the coordinator."""

    def __init__(self, message: str, site: str | None):
        super().__init__(message)
        self.site = site


def stop_leftovers(pids_file: Path) -> None:
    """Stop the Flower processes a killed earlier run of this federation left running (their PIDs are in `pids_file`)."""
    if not pids_file.is_file():
        return
    for name, pid in json.loads(pids_file.read_text()).items():
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue  # gone already
        if "flower-" in command:
            log.warning("stopping the %s process (PID %d) a killed earlier run left running", name, pid)
            for sig in (signal.SIGTERM, signal.SIGKILL):
                _signal_pid_group(pid, sig)
                time.sleep(2 if sig == signal.SIGTERM else 0)
    pids_file.unlink(missing_ok=True)


def _signal_group(popen: subprocess.Popen, sig: int) -> None:
    _signal_pid_group(popen.pid, sig)


def _signal_pid_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # each process leads its own session and group: this reaches the children Flower started
    except (ProcessLookupError, PermissionError):
        pass
