"""Where a running `fraudstream run` says how to reach its job: for `fraudstream savepoint` and
stop, the benchmarks and the dashboard's health (here, outside `cli/`, so that the web package
need not import the command-line package, which imports it)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from fraudstream.config import Settings


@dataclass(frozen=True)
class JobInfo:
    """What `fraudstream savepoint` needs to reach the running job; kept in the data directory."""

    pid: int
    job_id: str
    rest_port: int
    savepoint_uri: str
    # When the process started (clock ticks since boot, Linux): PIDs wrap around (at 32,768
    # on our machines, used up fast by JVM threads), so a PID alone may name another process.
    started: int | None = None
    # Where the job's REST endpoint is: a cluster's (cluster.jobmanager) host; None = this
    # machine's mini-cluster (pipeline.reach_host).
    rest_host: str | None = None

    def rest_url(self, settings: Settings) -> str:
        """The base URL of the job's REST endpoint (the mini-cluster's or the cluster's)."""
        host = self.rest_host or settings.pipeline.reach_host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.rest_port}"

    def is_running(self) -> bool:
        """Whether the run that wrote this file is still alive."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return self.started is None or process_start(self.pid) in (None, self.started)

    @staticmethod
    def path(settings: Settings) -> Path:
        return settings.data_dir / "job.json"

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # It steers the job (savepoint, stop): its owner's alone, whatever the umask.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(orjson.dumps(asdict(self)))

    @staticmethod
    def read(path: Path) -> JobInfo | None:
        try:
            return JobInfo(**orjson.loads(path.read_bytes()))
        except (OSError, orjson.JSONDecodeError, TypeError):
            return None

    @staticmethod
    def stop_marker(path: Path) -> Path:
        """Present while a stop-with-savepoint is under way: the run then ends as stopped, not finished."""
        return path.with_name("job.stopping")


def process_start(pid: int) -> int | None:
    """The process's start time from /proc (None where there is no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2) may hold spaces, so count from its closing bracket.
    return int(stat.rsplit(")", 1)[1].split()[19])
