"""A throwaway PostgreSQL server on this machine, from Debian's `postgresql` package: to try the
shared store without a database administrator, and for the tests.

`start` creates the database cluster once (a generated password, scram-sha-256, loopback only),
launches the server detached, waits until it answers and creates the `fraudstream` database;
`stop` ends that server by its PID. PostgreSQL refuses to run as root: when this process is
root, the server runs as the `postgres` user, in a folder that user owns.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from fraudstream.errors import UserFacingError

logger = logging.getLogger(__name__)

DATABASE = "fraudstream"
USER = "fraudstream"


class PostgresError(UserFacingError):
    """The local PostgreSQL server could not be started or stopped; one line for the user."""


def binaries() -> Path:
    """The folder of PostgreSQL's programs: Debian keeps them in /usr/lib/postgresql/<v>/bin."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    raise PostgresError("PostgreSQL is not installed: run 'make tools' (Debian's postgresql package)")


def server_root(data_dir: Path) -> Path:
    """Where the local server of a data directory lives: inside it, or, for root (whose files
    the postgres user cannot reach), in the postgres user's home, one folder per data directory."""
    if os.geteuid() != 0:
        return data_dir.resolve() / "postgres"
    import hashlib

    home = Path(pwd.getpwnam("postgres").pw_dir)
    tag = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
    return home / "fraudstream" / tag


@dataclass(frozen=True)
class PostgresStatus:
    pid: int | None
    ready: bool
    url: str

    @property
    def running(self) -> bool:
        return self.pid is not None


class LocalPostgres:
    """A PostgreSQL server in `root` (its data, log and password), on host:port."""

    def __init__(self, root: Path, port: int, host: str = "127.0.0.1", durable: bool = True) -> None:
        self.root = root
        self.port = port
        self.host = host
        # False (tests): no fsync; a crash of the machine may lose the last commits, nothing else
        self.durable = durable
        self.data = root / "data"
        self.log_file = root / "server.log"
        self.password_file = root / "password"
        self.port_file = root / "port"  # the port it last started on: `status` and `stop` find it there
        self._child: subprocess.Popen[bytes] | None = None

    @classmethod
    def at(cls, root: Path, port: int, host: str = "127.0.0.1") -> LocalPostgres:
        """The server in `root`, on the port it last started on if it did (else `port`)."""
        with contextlib.suppress(OSError, ValueError):
            port = int(Path(root, "port").read_text().strip())
        return cls(root, port, host)

    # -------------------------------------------------------------- who runs it
    def _owner(self) -> dict[str, Any]:
        """Popen's user/group: the postgres user when we are root, else ourselves."""
        if os.geteuid() != 0:
            return {}
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresError("PostgreSQL refuses to run as root, and there is no 'postgres' user") from None
        return {"user": pw.pw_uid, "group": pw.pw_gid}

    def _make_root(self) -> None:
        # Missing parents readable by all whatever the umask: the postgres user must pass them.
        missing = [p for p in self.root.parents if not p.exists()]
        for parent in reversed(missing):
            parent.mkdir(exist_ok=True)
            os.chmod(parent, 0o755)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        owner = self._owner()
        if owner:
            os.chown(self.root, owner["user"], owner["group"])

    # -------------------------------------------------------------- the URL
    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://{USER}:{self.password}@{self.host}:{self.port}/{database}"

    # -------------------------------------------------------------- lifecycle
    def pid(self) -> int | None:
        """The running postmaster's PID (from PostgreSQL's own postmaster.pid), if any.

        Only if that process is this server: a postmaster.pid left by a crash or a reboot
        names a PID some unrelated process may hold now, which `stop` must not signal."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if self._is_ours(pid) else None

    def _is_ours(self, pid: int) -> bool:
        """Whether `pid` runs PostgreSQL's `postgres` with `-D` this data directory (/proc)."""
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            exe = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")  # deleted: upgraded since
        except PermissionError:  # another user's process, not root: its cmdline must do
            exe = argv[0].decode(errors="replace")
        except OSError:  # gone, or a zombie
            return False
        if Path(exe).name != "postgres":
            return False
        args = [a.decode(errors="replace") for a in argv]
        data = self.data.resolve()
        return any(flag == "-D" and Path(value).resolve() == data for flag, value in itertools.pairwise(args))

    def status(self) -> PostgresStatus:
        pid = self.pid()
        url = self.url() if self.password_file.exists() else ""
        return PostgresStatus(pid, pid is not None and self._answers(), url)

    def start(self, timeout_s: float = 60.0) -> PostgresStatus:
        if self.pid() is not None:
            return self.status()
        self._make_root()
        bin_dir = binaries()
        owner = self._owner()
        if not (self.data / "PG_VERSION").exists():
            self._init(bin_dir, owner)
        with open(self.log_file, "ab") as log:
            self._child = subprocess.Popen(
                [
                    str(bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                    "-c", f"listen_addresses={self.host}", "-c", f"unix_socket_directories={self.root}",
                    "-c", "max_connections=100", *self._durability(),
                ],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, **owner,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._child.poll() is not None:
                raise PostgresError(f"PostgreSQL did not start: {self._last_error()} (log: {self.log_file})")
            if self._answers():
                break
            time.sleep(0.2)
        else:
            self.stop()
            raise PostgresError(f"PostgreSQL did not answer within {timeout_s:g}s (log: {self.log_file})")
        self.create_database(DATABASE)
        self.port_file.write_text(f"{self.port}\n")
        logger.info("PostgreSQL started: pid %d, %s:%d", self._child.pid, self.host, self.port)
        return self.status()

    def _durability(self) -> list[str]:
        flags = ["fsync", "synchronous_commit", "full_page_writes"]
        value = "on" if self.durable else "off"
        return [arg for flag in flags for arg in ("-c", f"{flag}={value}")]

    def _init(self, bin_dir: Path, owner: dict[str, Any]) -> None:
        if not self.password_file.exists():
            self.password_file.write_text(secrets.token_urlsafe(18) + "\n")
            os.chmod(self.password_file, 0o600)
            if owner:
                os.chown(self.password_file, owner["user"], owner["group"])
        done = subprocess.run(
            [
                str(bin_dir / "initdb"), "-D", str(self.data), "-U", USER, "--pwfile", str(self.password_file),
                "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
            ],
            capture_output=True, text=True, **owner,
        )  # fmt: skip
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["initdb failed"])[-1]
            raise PostgresError(f"could not create the PostgreSQL cluster in {self.data}: {last}")

    def _answers(self) -> bool:
        try:
            with psycopg.connect(self.url("postgres"), connect_timeout=2):
                return True
        except (psycopg.Error, OSError):
            return False

    def create_database(self, name: str) -> str:
        """A database of this server (created if missing); returns its URL."""
        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=5) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if found is None:
                conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
        return self.url(name)

    def _last_error(self) -> str:
        try:
            lines = [line for line in self.log_file.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return "no log"
        errors = [line for line in lines if "FATAL" in line or "ERROR" in line]
        return (errors or lines or ["no output"])[-1][-300:]

    def stop(self, timeout_s: float = 30.0) -> bool:
        """End the server (a fast shutdown: clients are disconnected); True if one was running."""
        pid = self.pid()
        if pid is None:
            self._reap()
            return False
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._reap()
            if not self._is_ours(pid):  # ending or ended (its PID may be another's already)
                if self._child is not None and self._child.pid == pid:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self._child.wait(timeout=max(0.1, deadline - time.monotonic()))  # reap our child
                    self._reap()
                return True
            time.sleep(0.1)
        logger.warning("PostgreSQL %d did not stop in %.0fs; killing it", pid, timeout_s)
        if self._is_ours(pid):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        self._reap()
        return True

    def _reap(self) -> None:
        if self._child is not None and self._child.poll() is not None:
            self._child = None
