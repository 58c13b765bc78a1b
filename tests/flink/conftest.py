from __future__ import annotations

from pathlib import Path

import pytest

from fraudstream.config import load_settings
from fraudstream.flink.job import build_job
from fraudstream.flink.sources import SourceSpec

pytestmark = pytest.mark.flink


@pytest.fixture(scope="session", autouse=True)
def _stop_flink_gateway_at_the_end():
    """In-process jobs share one gateway JVM; stop and reap it when the session ends."""
    yield
    from fraudstream.flink.gateway import stop_gateway

    stop_gateway()


class JobResult:
    def __init__(self, records):
        self.alerts = [r for kind, r in records if kind == "alert"]
        self.dead = [r for kind, r in records if kind == "dead"]

    @property
    def alert_keys(self) -> set[tuple[str, str, str, int]]:
        return {(a.alert_type, a.key, a.transaction_id, a.event_time) for a in self.alerts}


def run_file(path: Path, data_dir: Path, **flags) -> JobResult:
    """Run the real job on the local mini-cluster over a JSON-lines file."""
    settings = load_settings(flags={"data_dir": str(data_dir), **flags}, environ={})
    graph = build_job(settings, SourceSpec.parse(f"file:{path}"))
    _, results = graph.start("test")
    assert results is not None
    with results:
        return JobResult(list(results))


class ValueStateStub:
    """ValueState stand-in, to run a Python process function's logic without Flink."""

    def __init__(self) -> None:
        self.v: int | None = None

    def value(self) -> int | None:
        return self.v

    def update(self, v: int) -> None:
        self.v = v


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path
