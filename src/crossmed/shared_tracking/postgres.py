"""The PostgreSQL server behind the shared MLflow store: Debian's `postgresql`, on 127.0.0.1, run as `postgres`
when crossmed runs as root (PostgreSQL refuses root), with one role and two databases (tracking, auth)."""

import hashlib
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from crossmed.errors import CrossmedError
from crossmed.shared_tracking.home import TrackingHome, write_private

log = logging.getLogger("crossmed.tracking")
ROLE = "mlflow"
TRACKING_DB, AUTH_DB = "mlflow", "mlflow_auth"  # MLflow's auth tables kept apart from its tracking tables
SERVICE_USER = "postgres"
START_TIMEOUT_S = 30


class PostgresError(CrossmedError):
    """PostgreSQL is missing, or a command of it failed: says which and shows its output."""


def server_binaries() -> Path:
    """Return the folder of initdb/pg_ctl: on PATH, else Debian's newest /usr/lib/postgresql/<version>/bin."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name)
                      if p.parent.parent.name.isdigit() else 0)
    if not versions:
        raise PostgresError("PostgreSQL's server is not installed: on Debian/Ubuntu `apt-get install postgresql` "
                            "(scripts/bootstrap.sh does this when run as root)")
    return versions[-1].parent


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """Return PostgreSQL's SCRAM-SHA-256 verifier of `password` (RFC 5802/7677), what `ALTER ROLE ... PASSWORD` stores."""
    import base64
    import hmac
    import secrets

    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda raw: base64.b64encode(raw).decode()
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


@dataclass
class Postgres:
    """One PostgreSQL cluster on 127.0.0.1:`port`, its files in `base` (data/, server.log, the socket)."""

    base: Path
    port: int

    @classmethod
    def for_home(cls, home: TrackingHome, port: int) -> "Postgres":
        """Return the cluster of a tracking home: in it, or, as root, in the postgres user's own folder (a root-owned
        home is not readable by `postgres`), under a name derived from the home's path."""
        if os.geteuid() != 0:
            return cls(home.root / "postgres", port)
        key = hashlib.sha256(str(home.root.resolve()).encode()).hexdigest()[:16]
        return cls(Path("/var/lib/postgresql/crossmed-tracking") / key, port)

    @property
    def data(self) -> Path:
        """The cluster's data folder (initdb's -D)."""
        return self.base / "data"

    @property
    def log_file(self) -> Path:
        """The server's log (pg_ctl -l)."""
        return self.base / "server.log"

    def _as_service(self, command: list, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """Run a PostgreSQL command as the cluster's owner (`postgres` when we are root)."""
        command = [str(part) for part in command]
        program = Path(command[0]).name
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVICE_USER, "--", *command]
        result = subprocess.run(command, input=stdin, capture_output=True, text=True, cwd="/", timeout=120)
        if check and result.returncode != 0:
            raise PostgresError(f"{program} failed ({result.returncode}): "
                                f"{(result.stderr or result.stdout).strip()[-1500:]}")
        return result

    def initialised(self) -> bool:
        """Return whether the cluster's data folder was made."""
        return (self.data / "PG_VERSION").is_file()

    def init(self) -> None:
        """Create the cluster: local connections by peer (the owner only), TCP by SCRAM-SHA-256 password."""
        self.base.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.geteuid() == 0:
            shutil.chown(self.base.parent, SERVICE_USER, SERVICE_USER)
            shutil.chown(self.base, SERVICE_USER, SERVICE_USER)
        self._as_service([server_binaries() / "initdb", "-D", self.data, "--auth-local=peer",
                          "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-locale", "--no-instructions"])
        log.info("PostgreSQL cluster created in %s", self.data)

    def running(self) -> bool:
        """Return whether the cluster's server runs (pg_ctl status)."""
        return self.initialised() and self._as_service([server_binaries() / "pg_ctl", "status", "-D", self.data],
                                                       check=False).returncode == 0

    def running_port(self) -> int | None:
        """Return the port the cluster's running server listens on (postmaster.pid), or None when it is stopped."""
        if not self.running():
            return None
        return int((self.data / "postmaster.pid").read_text().splitlines()[3])

    def start(self) -> None:
        """Start the server on 127.0.0.1:port (its socket in `base`, not the system's) and wait until it accepts."""
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.base}"
        self._as_service([server_binaries() / "pg_ctl", "start", "-D", self.data, "-l", self.log_file, "-w",
                          "-t", START_TIMEOUT_S, "-o", options])
        log.info("PostgreSQL on 127.0.0.1:%d (data %s, log %s)", self.port, self.data, self.log_file)

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions end, committed data stays)."""
        if self.running():
            self._as_service([server_binaries() / "pg_ctl", "stop", "-D", self.data, "-m", "fast", "-w"])
            log.info("PostgreSQL stopped")

    def delete(self) -> None:
        """Remove the cluster's files (the server must be stopped)."""
        shutil.rmtree(self.base, ignore_errors=True)

    def restart(self) -> None:
        """Stop and start the server again on the same port."""
        self.stop()
        self.start()

    def sql(self, script: str) -> str:
        """Run SQL as the cluster's owner over its own socket (psql, stops at the first error); return the output."""
        return self._as_service(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.base, "-p", self.port,
                                 "-d", "postgres", "-At"], stdin=script).stdout

    def ensure_databases(self, password: str) -> None:
        """Create (or keep) the `mlflow` role with `password` and its two databases, one for tracking, one for auth.
        The server is sent the password's SCRAM verifier, never the password (so no server log can hold it)."""
        created = [f"SELECT 'CREATE DATABASE {name} OWNER {ROLE}' WHERE NOT EXISTS "
                   f"(SELECT FROM pg_database WHERE datname = '{name}')\\gexec" for name in (TRACKING_DB, AUTH_DB)]
        self.sql("\n".join([f"SELECT 'CREATE ROLE {ROLE} LOGIN' WHERE NOT EXISTS "
                            f"(SELECT FROM pg_roles WHERE rolname = '{ROLE}')\\gexec",
                            f"ALTER ROLE {ROLE} PASSWORD '{scram_verifier(password)}';", *created]))

    def passfile(self, home: TrackingHome, password: str) -> Path:
        """Write secrets/pgpass (libpq's password file, 0600) so no URI or command line carries the password."""
        path = home.secrets / "pgpass"
        write_private(path, f"127.0.0.1:{self.port}:*:{ROLE}:{password}\n")
        return path

    def uri(self, database: str) -> str:
        """Return the SQLAlchemy URI of a database (driver psycopg 3, named; the password comes from PGPASSFILE)."""
        return f"postgresql+psycopg://{ROLE}@127.0.0.1:{self.port}/{database}"
