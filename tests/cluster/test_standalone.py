"""`fraudstream cluster start | status | stop` on a real local cluster (one start for the file:
a start costs 10-20 s), and the TaskManager crash and replacement that the cluster tests use."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import psutil
import pytest
import yaml

from fraudstream.cluster.standalone import LocalCluster, _Proc, _Record
from tests.cluster.conftest import cluster_settings
from tests.sockets import not_loopback

FRAUDSTREAM = Path(sys.executable).parent / "fraudstream"


def cli(data_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FRAUDSTREAM), "--data-dir", str(data_dir), "cluster", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    """The cluster as `cluster start` leaves it (1 TaskManager x 2 slots), and the LocalCluster
    of the same settings; stopped at the end whatever happened."""
    data_dir = tmp_path_factory.mktemp("cluster-cli")
    settings = cluster_settings(data_dir, taskmanagers=1, slots=2)
    flags = ["--set", f"cluster.rest_port={settings.cluster.rest_port}"]
    flags += ["--set", f"metrics.job_port={settings.metrics.job_port}"]
    before = cli(data_dir, "status", *flags)
    began = time.monotonic()
    result = cli(data_dir, "start", "--taskmanagers", "1", "--slots", "2", *flags)
    took = time.monotonic() - began
    cluster = LocalCluster(settings)
    try:
        yield data_dir, flags, cluster, before, result, took
    finally:
        cluster.stop()


@pytest.mark.flink
def test_start_prints_where_everything_is(started):
    _, _, cluster, before, result, took = started
    assert before.returncode == 1 and before.stdout.startswith("not running"), before.stdout
    assert result.returncode == 0, result.stderr
    status = cluster.status()
    assert status is not None and status.ready, status
    assert (status.taskmanagers, status.slots_total) == (1, 2)
    out = result.stdout
    assert f"JobManager pid {status.jobmanager_pid}; TaskManager pids " in out
    assert f"Web UI: http://{cluster.rest_address}\n" in out
    assert f"fraudstream run --jobmanager {cluster.rest_address}" in out
    assert f"Logs: {cluster.log_dir}" in out
    print(f"cluster start: {took:.1f}s")
    # each JVM recorded with its Flink log (where a crash's ERROR line is), not the log folder
    record = orjson.loads((cluster.root / "cluster.json").read_bytes())
    for proc in [record["jobmanager"], *record["taskmanagers"]]:
        assert proc["log"].endswith(".log") and Path(proc["log"]).is_file(), proc
    # everything of it listens on loopback only (REST, RPC, blob, data, the reporter)
    assert not not_loopback([status.jobmanager_pid, *status.taskmanager_pids])
    conf = yaml.safe_load((cluster.conf_dir / "config.yaml").read_text())
    assert conf["rest.port"] == cluster.settings.cluster.rest_port
    assert conf["taskmanager.numberOfTaskSlots"] == 2
    assert conf["heartbeat.timeout"] == "10 s"
    assert conf["metrics.reporter.prom.factory.class"].startswith("io.fraudstream.")
    # each JVM's Prometheus reporter, on one of the ports it was given, shown by status
    ports = {int(p) for p in cluster.settings.metrics.job_port.split(",")}
    urls = [status.metrics[pid] for pid in (status.jobmanager_pid, *status.taskmanager_pids)]
    assert {int(url.rsplit(":", 1)[1].removesuffix("/metrics")) for url in urls} <= ports
    with urllib.request.urlopen(urls[0], timeout=10) as resp:
        assert b"flink_jobmanager_numRegisteredTaskManagers" in resp.read()


@pytest.mark.flink
def test_second_start_is_a_no_op(started):
    data_dir, flags, cluster, *_ = started
    pids = [cluster.status().jobmanager_pid, *cluster.taskmanager_pids()]
    again = cli(data_dir, "start", *flags)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"Flink cluster already running: JobManager pid {pids[0]}")
    assert [cluster.status().jobmanager_pid, *cluster.taskmanager_pids()] == pids


@pytest.mark.flink
def test_killed_taskmanager_is_noticed_and_replaced(started):
    data_dir, flags, cluster, *_ = started
    (victim,) = cluster.taskmanager_pids()
    cluster.kill_taskmanager(victim)
    assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == psutil.STATUS_ZOMBIE
    assert cluster.taskmanager_pids() == []
    began = time.monotonic()
    cluster.wait_for_slots(0, timeout_s=40)  # the JobManager has noticed (heartbeat)
    noticed = time.monotonic() - began
    new = cluster.add_taskmanager()
    cluster.wait_for_slots(2, timeout_s=60)
    print(
        f"lost TaskManager noticed after {noticed:.1f}s, replacement registered after {time.monotonic() - began:.1f}s"
    )
    shown = cli(data_dir, "status", *flags)
    assert shown.returncode == 0, shown.stdout
    rows = [line.split()[:2] for line in shown.stdout.splitlines()]
    assert ["TaskManager", str(new)] in rows and ["TaskManager", str(victim)] not in rows
    assert "TaskManagers registered: 1 of 1; task slots: 2 (2 free)" in shown.stdout


@pytest.mark.flink
def test_stop_leaves_no_process(started):
    data_dir, flags, cluster, *_ = started
    status = cluster.status()
    assert status is not None
    procs = [psutil.Process(p) for p in (status.jobmanager_pid, *status.taskmanager_pids)]
    stopped = cli(data_dir, "stop", *flags)
    assert stopped.returncode == 0 and stopped.stdout.startswith("Flink cluster stopped"), stopped.stdout
    assert cluster.status() is None  # also reaps the TaskManager this process started
    left = [p.pid for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left
    after = cli(data_dir, "status", *flags)
    assert after.returncode == 1 and after.stdout.count("\n") == 1, after.stdout
    assert cli(data_dir, "stop", *flags).stdout.startswith("no local Flink cluster")


@pytest.mark.flink
def test_restart_with_metrics_off_two_at_once_then_the_jobmanager_killed(started):
    """After a stop, two starts at once with metrics off: one JobManager, both see it, and no
    empty plugin folder (Flink refuses one). Then the JobManager killed: status names the
    TaskManager left, and stop ends it."""
    data_dir, flags, cluster, *_ = started
    argv = [str(FRAUDSTREAM), "--data-dir", str(data_dir), "cluster", "start", *flags, "--set", "metrics.enabled=false"]
    starts = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        outs = [p.communicate(timeout=120) for p in starts]
        for p, (_, err) in zip(starts, outs, strict=True):
            assert p.returncode == 0, err
        status = cluster.status()
        assert status is not None and status.reporter == "metrics.enabled is false"
        for out, _ in outs:
            assert f"JobManager pid {status.jobmanager_pid};" in out, out
        assert _jobmanagers(cluster) == [status.jobmanager_pid]
        assert not (cluster.root / "plugins" / "fraudstream-prometheus").exists()
        cluster.wait_for_slots(2, timeout_s=60)
        tms = cluster.taskmanager_pids()
        assert len(tms) == 1
        os.kill(status.jobmanager_pid, signal.SIGKILL)
        _wait_gone(status.jobmanager_pid)
        shown = cli(data_dir, "status", *flags)
        assert shown.returncode == 1
        assert shown.stdout == f"JobManager gone; TaskManager pid(s) {tms[0]} left: run 'fraudstream cluster stop'\n"
        stopped = cli(data_dir, "stop", *flags)
        assert stopped.stdout.startswith(f"Flink cluster stopped (pids {tms[0]})"), stopped.stdout
        _wait_gone(tms[0], 1)
    finally:
        for p in starts:
            if p.poll() is None:
                p.kill()
                p.wait()
        cluster.stop()


# The end of a JobManager's Flink log when a plugin folder has no jar (measured; trimmed)
CRASHED_LOG = """\
2026-12-01 18:45:35,850 INFO  org.apache.flink.runtime.entrypoint.ClusterEntrypoint        [] - Shutting \
StandaloneSessionClusterEntrypoint down with application status FAILED.
2026-12-01 18:45:35,860 ERROR org.apache.flink.runtime.entrypoint.ClusterEntrypoint        [] - Could not start \
cluster entrypoint StandaloneSessionClusterEntrypoint.
org.apache.flink.runtime.entrypoint.ClusterEntrypointException: Failed to initialize the cluster entrypoint.
\tat org.apache.flink.runtime.entrypoint.ClusterEntrypoint.startCluster(ClusterEntrypoint.java:269)
Caused by: java.lang.RuntimeException: java.io.IOException: Cannot find any jar files for plugin in directory [/p/x].
\tat org.apache.flink.core.plugin.DirectoryBasedPluginFinder.findPlugins(DirectoryBasedPluginFinder.java:80)
Caused by: java.io.IOException: Cannot find any jar files for plugin in directory [/p/x]. Please provide the jar files.
\tat org.apache.flink.core.plugin.DirectoryBasedPluginFinder.createPluginDescriptorForSubDirectory(...)
"""


def test_a_crashed_jobmanager_is_explained_from_its_flink_log(tmp_path):
    """The JobManager's ERROR line and root cause, from its Flink log, though it ended before
    a TaskManager was recorded (which forgets what has ended, but not the JobManager)."""
    cluster = LocalCluster(cluster_settings(tmp_path))
    log = tmp_path / "flink-fraudstream-standalonesession-0-host.log"
    log.write_text(CRASHED_LOG)
    dead = []
    for _ in range(2):
        p = subprocess.Popen(["true"])
        dead.append(_Proc(p.pid, psutil.Process(p.pid).create_time(), str(log)))
        p.wait()
    cluster._save(_Record(jobmanager=dead[0], taskmanagers=[dead[1]]))
    cluster.kill_taskmanager(dead[1].pid)  # ended by itself: forgotten, and the record saved
    assert cluster.status() is None and cluster._read().jobmanager == dead[0]
    assert cluster._last_error() == (
        "Could not start cluster entrypoint StandaloneSessionClusterEntrypoint. java.io.IOException: "
        f"Cannot find any jar files for plugin in directory [/p/x]. Please provide the jar files. (see {log})"
    )


def _jobmanagers(cluster: LocalCluster) -> list[int]:
    """The live JobManager JVMs of this cluster's conf dir."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        line = " ".join(p.info["cmdline"] or [])
        if str(cluster.conf_dir) in line and "StandaloneSession" in line and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(p.pid)
    return found


def _wait_gone(pid: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} still runs after {timeout_s}s")


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# A TaskManager's stand-in (no JVM needed): in its own session, with one "Python worker"
# (our conf dir in its environment, as a worker inherits the JVM's) and one stranger in its
# process group; it prints their PIDs.
FAKE_TASKMANAGER = """
import os, subprocess, sys, time
env = {k: v for k, v in os.environ.items() if k != "FLINK_CONF_DIR"}
worker = subprocess.Popen(["sleep", "60"])
stranger = subprocess.Popen(["sleep", "60"], env=env)
print(worker.pid, stranger.pid, flush=True)
time.sleep(60)
"""


def test_workers_of_a_taskmanager_that_ended_by_itself_are_killed(tmp_path):
    """Forgetting a TaskManager that has died (stop, kill_taskmanager, any record update)
    kills what is left of its process group, but only the processes that are ours."""
    cluster = LocalCluster(cluster_settings(tmp_path))
    env = {**os.environ, "FLINK_CONF_DIR": str(cluster.conf_dir)}
    leaders, workers, strangers = [], [], []
    try:
        for forget in (cluster.stop, cluster.kill_taskmanager):
            leader = subprocess.Popen(
                [sys.executable, "-c", FAKE_TASKMANAGER],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            leaders.append(leader)
            worker, stranger = map(int, leader.stdout.readline().split())
            workers.append(psutil.Process(worker))
            strangers.append(psutil.Process(stranger))
            cluster._save(_Record(taskmanagers=[_Proc(leader.pid, psutil.Process(leader.pid).create_time())]))
            leader.kill()  # the TaskManager dies by itself; its worker lives on
            leader.wait()
            assert _running(workers[-1]) and cluster.taskmanager_pids() == []
            if forget == cluster.stop:
                assert cluster.stop()  # True: something of it was running
            else:
                cluster.kill_taskmanager(leader.pid)
            _wait_gone(workers[-1].pid)
            assert _running(strangers[-1])  # in its group, but not ours
            assert not cluster.record_file.exists() or cluster._read().taskmanagers == []
    finally:
        for p in [*workers, *strangers]:
            with contextlib.suppress(psutil.Error):
                p.kill()
        for leader in leaders:
            if leader.poll() is None:
                leader.kill()
                leader.wait()


def test_start_refuses_a_taken_port(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = cli(tmp_path, "start", "--set", f"cluster.rest_port={port}", timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"fraudstream: error: port {port} on 127.0.0.1 is already in use by another program: "
        "stop it, or choose another port with --set cluster.rest_port=N"
    )
    assert not (tmp_path / "cluster" / "cluster.json").exists()
