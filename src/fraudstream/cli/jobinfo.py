"""Where a running `fraudstream run` says how to reach its job (for `fraudstream savepoint`)."""

from __future__ import annotations

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

    @staticmethod
    def path(settings: Settings) -> Path:
        return settings.data_dir / "job.json"

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(asdict(self)))

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
