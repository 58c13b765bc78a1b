"""A local standalone Flink cluster for the whole test session (the Kafka broker is tests/kafka/fixtures.py's)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import psutil
import pytest

from fraudstream.cluster.standalone import LocalCluster
from fraudstream.config import Settings, load_settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_settings(data_dir, taskmanagers: int = 2, slots: int = 2) -> Settings:
    """Settings of a local cluster on free ports (REST, and the Prometheus reporter of each JVM:
    a few single ports, one taken per JVM), its files in `data_dir`/cluster."""
    reporter_ports = ",".join(str(free_port()) for _ in range(6))
    return load_settings(
        flags={
            "data_dir": str(data_dir),
            "cluster.rest_port": free_port(),
            "cluster.taskmanagers": taskmanagers,
            "cluster.slots": slots,
            "metrics.job_port": reporter_ports,
        },
        environ={},
    )


@pytest.fixture(scope="session")
def flink_cluster(tmp_path_factory) -> Iterator[LocalCluster]:
    """A started local standalone Flink cluster, shared by the session: 2 TaskManagers x 2 slots
    (4 slots, so jobs up to parallelism 4), REST and web UI at `flink_cluster.rest_address`
    (127.0.0.1:<free port>; `fraudstream run --jobmanager` takes it), its conf, logs and pid
    files in a temporary `<data_dir>/cluster` (`flink_cluster.log_dir`: the TaskManagers'
    `flink-fraudstream-taskexecutor-N-<host>.out` hold print() output; `flink_cluster.settings`
    are its settings, data_dir included). Checkpoints and savepoints default to that data_dir.

    A test may kill a TaskManager (`kill_taskmanager(pid)`, from `taskmanager_pids()`) and add
    one (`add_taskmanager()`): it should leave 4 slots behind (`wait_for_slots(4, timeout_s)`)
    for the next test. Stopped at the end of the session; no JVM or Python worker of it is
    left (asserted). With pytest-xdist, each worker that uses it starts its own.

    Heartbeats every 500 ms (2 s by default): a killed TaskManager is noticed after two
    refused heartbeats, so within about a second, while one that hangs is still given the
    default 10 s."""
    cluster = LocalCluster(cluster_settings(tmp_path_factory.mktemp("flink-cluster")), heartbeat_interval="500 ms")
    cluster.start()
    seen: set[psutil.Process] = set()
    try:
        yield cluster
    finally:
        for pid in [*cluster.taskmanager_pids(), *([s.jobmanager_pid] if (s := cluster.status()) else [])]:
            seen |= _tree(pid)
        cluster.stop()
        left = [p.pid for p in seen if _alive(p)]
        assert not left, f"processes of the local cluster outlived its stop: {left}"


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _tree(pid: int) -> set[psutil.Process]:
    """A process and all below it (a TaskManager's Python workers)."""
    try:
        root = psutil.Process(pid)
        return {root, *root.children(recursive=True)}
    except psutil.Error:
        return set()
