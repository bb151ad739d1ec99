"""Background servers that outlive the command that started them: start with a log file, recognise by pid and start
time (a reused pid is not ours), stop the whole process group."""

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

from crossmed.errors import CrossmedError

STOP_GRACE_S = 15.0


class ServerStartError(CrossmedError):
    """A server could not start: its port is taken, or it did not answer in time (with the end of its log)."""


def _start_ticks(pid: int) -> int | None:
    """Return when process `pid` started (clock ticks since boot, /proc/<pid>/stat), or None if there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def start(command: list[str], log_file: Path, env: dict) -> dict:
    """Start `command` in its own session, output appended to `log_file`; return its record {pid, started, log}."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as output:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True, cwd=log_file.parent)
    return {"pid": process.pid, "started": _start_ticks(process.pid), "log": str(log_file)}


def start_server(name: str, port: int, command: list[str], log_file: Path, env: dict, ready: Callable[[], bool],
                 timeout_s: float) -> dict:
    """Start a server that listens on 127.0.0.1:`port` and wait until `ready()`; return its record. A taken port, an
    early exit or no answer within `timeout_s` stops it and raises ServerStartError naming `name` and its log."""
    from crossmed.ports import listening

    if listening(port):
        raise ServerStartError(f"{name}: port {port} on 127.0.0.1 is taken by another program")
    record = start(command, log_file, env)
    if not wait_until(lambda: ready() or not alive(record), timeout_s, 0.3) or not alive(record):
        stop(record)
        raise ServerStartError(f"{name} did not answer on 127.0.0.1:{port} within {timeout_s:.0f} s; its log "
                               f"({log_file}) ends:\n{log_tail(record)}")
    return record


def alive(record: dict | None) -> bool:
    """Return whether the process of a record still runs (the same process: its start time matches)."""
    if not record:
        return False
    ticks = _start_ticks(record["pid"])
    if ticks is None or ticks != record.get("started"):
        return False
    try:
        state = Path(f"/proc/{record['pid']}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:  # it exited just now
        return False
    return state != "Z"


def _group_alive(pid: int) -> bool:
    """Return whether any process is left in the process group `pid` (our server's children after it died)."""
    try:
        os.killpg(pid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def stop(record: dict | None, grace_s: float = STOP_GRACE_S) -> None:
    """Stop a recorded server and its children: SIGTERM to its process group, SIGKILL after `grace_s`. A group whose
    leader already died (its workers left) is killed too; the group id is the leader's pid, unique while any member lives."""
    if not record:
        return
    leader = alive(record)
    if not leader and not (_start_ticks(record["pid"]) is None and _group_alive(record["pid"])):
        return  # nothing of ours left (or the pid now belongs to another process)
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(record["pid"], sig)
        except ProcessLookupError:
            return
        if wait_until(lambda: not alive(record) and not _group_alive(record["pid"]), wait_s):
            _reap(record["pid"])
            return


def _reap(pid: int) -> None:
    """Collect the exit status of a child of this process (a server started in this process), if it is one."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait_until(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> bool:
    """Poll `condition` until it holds or `timeout_s` passes; return whether it held."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def log_tail(record: dict, lines: int = 25) -> str:
    """Return the last lines of a server's log file."""
    try:
        return "\n".join(Path(record["log"]).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
