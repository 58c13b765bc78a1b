"""A real Prometheus server for the metrics tests, scraping what the test points it at."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.kafka.conftest import free_port  # noqa: F401 (the broker and kafka fixtures: tests/kafka/fixtures.py)

ROOT = Path(__file__).resolve().parents[2]
SCRAPE_CONFIG = ROOT / "monitoring" / "prometheus.yml"
GRAFANA = ROOT / "monitoring" / "grafana-dashboard.json"


def derived_config(targets: dict[str, list[str]], interval: str = "1s") -> dict[str, Any]:
    """monitoring/prometheus.yml with each job's targets replaced (job name -> host:port list)
    and a short scrape interval; a job not named keeps its targets."""
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    config["global"].update(scrape_interval=interval, scrape_timeout=interval, evaluation_interval=interval)
    for job in config["scrape_configs"]:
        if job["job_name"] in targets:
            job["static_configs"] = [{"targets": targets[job["job_name"]]}]
    unknown = set(targets) - {j["job_name"] for j in config["scrape_configs"]}
    assert not unknown, f"no such job in {SCRAPE_CONFIG}: {unknown}"
    return config


class Prometheus:
    """A running Prometheus server: `query` evaluates PromQL through its HTTP API."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)

    def query(self, promql: str) -> list[dict[str, Any]]:
        reply = self.http.get("/api/v1/query", params={"query": promql}).json()
        assert reply["status"] == "success", reply
        return reply["data"]["result"]

    def value(self, promql: str) -> float | None:
        """The single value of a scalar-like query (e.g. a `sum`), None when it has no series."""
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def by(self, promql: str, label: str) -> dict[str, float]:
        return {r["metric"][label]: float(r["value"][1]) for r in self.query(promql)}

    def names(self) -> set[str]:
        """The metric names scraped: those with series, and those the targets declared (HELP and
        TYPE) without a series yet, as a labelled counter before its first increment."""
        names = set(self.http.get("/api/v1/label/__name__/values").json()["data"])
        # metadata is by family (OpenMetrics): a counter's samples end in _total
        suffixes = {"counter": ("_total",), "summary": ("_count", "_sum"), "histogram": ("_count", "_sum", "_bucket")}
        for family, entries in self.http.get("/api/v1/metadata").json()["data"].items():
            names.add(family)
            names.update(family + s for e in entries for s in suffixes.get(e["type"], ()))
        return names

    def wait_until(self, what: str, check: Any, timeout_s: float, alive: Any = None) -> None:
        """Poll `check()` (Prometheus' view) until true; `alive()` false ends the wait early."""
        deadline = time.monotonic() + timeout_s
        while not check():
            assert alive is None or alive(), f"the process being scraped ended before {what}"
            assert time.monotonic() < deadline, f"Prometheus never saw {what}"
            time.sleep(0.5)


@pytest.fixture
def prometheus(tmp_path) -> Iterator[Any]:
    """`start(targets)` runs Prometheus on a free loopback port with `derived_config(targets)`;
    the server is stopped by its PID at the end of the test, failed or not."""
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.fail("the prometheus server is not installed: run 'make tools' (Debian's prometheus package)")
    procs: list[subprocess.Popen] = []

    def start(targets: dict[str, list[str]]) -> Prometheus:
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump(derived_config(targets)))
        port = free_port()
        log = (tmp_path / "prometheus.log").open("w")
        proc = subprocess.Popen(
            [
                exe,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        procs.append(proc)
        server = Prometheus(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                if server.http.get("/-/ready").status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "Prometheus did not get ready"
            time.sleep(0.2)

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
