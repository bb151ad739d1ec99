"""A hospital's site process in a federation: its Flower SuperNode, started against a coordinator with its own data.

`supernode_command` is the one place the SuperNode's arguments are built: the trial federation on one machine
(crossmed.federated.processes) and `crossmed site join` (a hospital joining a coordinator across the internet)
both use it. `join_federation` checks the site's processed folder first (a broken one is named before anything
connects), then runs the SuperNode in the foreground until it is stopped.
"""

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from crossmed.errors import CrossmedError
from crossmed.federated.messages import DATA_DIR_KEY, SITE_KEY

log = logging.getLogger("crossmed.federated.site")
OFFLINE_ENV = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1", "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.2",
               "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}  # no network calls, no `uv sync` of the app


def supernode_command(site: str, folder: str | Path, superlink: str, runtime_port: int, ca_certificate: str | Path | None = None,
                      private_key: str | Path | None = None) -> list[str]:
    """Return the `flower-supernode` arguments for `site` reading `folder`, connecting to `superlink` (host:port):
    over TLS trusting `ca_certificate` (plain HTTP when None), signing in with `private_key` when given."""
    transport = ["--root-certificates", str(ca_certificate)] if ca_certificate else ["--insecure"]
    if private_key is not None:
        transport += ["--auth-supernode-private-key", str(private_key)]
    return ["flower-supernode", *transport, "--superlink", superlink, "--host", "127.0.0.1", "--port", str(runtime_port),
            "--node-config", f'{SITE_KEY}="{site}" {DATA_DIR_KEY}="{Path(folder).resolve()}"']


def check_site_folder(folder: str | Path, site: str) -> dict:
    """Return the site's image counts from its processed folder; raise InputError naming the file that is missing or wrong."""
    from crossmed.federated.site_data import load_site_data, site_summary

    counts, _ = site_summary(load_site_data(folder, site), folder)
    return counts


def join_federation(site: str, folder: str | Path, coordinator: str, ca_certificate: str | Path | None,
                    private_key: str | Path | None, home: str | Path, portable_cpu: bool = True) -> int:
    """Check the site's folder, then run its SuperNode against `coordinator` in the foreground; return its exit code.

    With `portable_cpu` the site trains in the portable CPU arithmetic (crossmed.reproducibility.PORTABLE_ENV, what
    reproducibility.cpu=portable gives a stage), so a rerun of the federation gives the same weights on any CPU.
    """
    from crossmed.ports import free_port
    from crossmed.reproducibility import PORTABLE_ENV

    for option, path in (("--ca", ca_certificate), ("--key", private_key)):
        if path is not None and not Path(path).is_file():
            raise CrossmedError(f"{option} {path}: no such file")
    counts = check_site_folder(folder, site)
    log.info("site %s: %d training and %d validation images in %s", site, counts["train-images"], counts["val-images"],
             Path(folder).resolve())
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent  # flower-supernode and the flwr-clientapp it starts, from this environment
    command = supernode_command(site, folder, coordinator, free_port(), ca_certificate, private_key)
    command[0] = str(bin_dir / command[0])
    env = {**os.environ, **OFFLINE_ENV, **(PORTABLE_ENV if portable_cpu else {}), "FLWR_HOME": str(home),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    log.info("site %s: joining the coordinator at %s (%s, %s CPU arithmetic); Flower's state in %s; stop with Ctrl-C", site,
             coordinator, ("TLS, signing in with " + str(private_key)) if ca_certificate and private_key else "TLS" if ca_certificate
             else "no TLS", "portable" if portable_cpu else "native", home)
    process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
    previous = signal.signal(signal.SIGTERM, lambda *_: process.terminate())  # stopping this stops the SuperNode too
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return process.wait(timeout=30)
    finally:
        signal.signal(signal.SIGTERM, previous)
