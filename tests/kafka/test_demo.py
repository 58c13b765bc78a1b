"""`fraudstream demo` as a user runs it: broker, producer and job together; Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from fraudstream.flink.gateway import processes
from tests.kafka.conftest import free_port
from tests.lines import in_own_session

pytestmark = pytest.mark.flink


@pytest.mark.parametrize("keep_broker", [False, True])
def test_demo_shows_alerts_and_ctrl_c_leaves_nothing_running(tmp_path, keep_broker):
    data = tmp_path / "data"
    dash = free_port()
    ports = ["--set", f"broker.port={free_port()}", "--set", f"broker.controller_port={free_port()}"]
    ports += ["--set", f"dashboard.port={dash}"]
    # alerts are printed once committed, at a checkpoint: the first ones show sooner
    ports += ["--set", "checkpoint.interval_ms=1000", "--set", "checkpoint.backlog_interval_ms=1000"]
    with open(tmp_path / "stderr.txt", "w+") as stderr:
        command = [sys.executable, "-m", "fraudstream", "--data-dir", str(data), *ports,
                   "demo", "--rate", "200", *(["--keep-broker"] if keep_broker else [])]  # fmt: skip
        with in_own_session(command, stderr=stderr) as (proc, out):
            assert out.wait_for("ALERT", 3, 150, proc), out.finish(1)[-2000:]
            group = [p.pid for p in processes() if p.pgid == proc.pid and p.state != "Z"]
            assert len(group) >= 4  # the demo, its producer, its dashboard and Flink's JVM
            # The dashboard's address, printed before the job started, answers while it runs.
            shown = next(line for line in out.lines if line.startswith("Dashboard: "))
            assert shown.startswith(f"Dashboard: http://127.0.0.1:{dash} (pid "), shown
            assert int(shown.split("(pid ")[1].split(",")[0]) in group
            assert httpx.get(f"http://127.0.0.1:{dash}/", timeout=10).status_code == 200
            broker = int((data / "kafka" / "broker.pid").read_text())  # in a session of its own
            group.append(broker)
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
            proc.wait(90)
        text = out.finish()
        stderr.seek(0)
        err = stderr.read()
    assert proc.returncode == 0, err[-2000:]
    assert "Producer stopped (exit 0)" in text
    assert "Dashboard stopped (exit 0)" in text  # and no longer running: `left` below
    assert "Traceback" not in err
    if keep_broker:  # still there, and still ours to stop
        assert "Kafka broker left running" in text
        assert [p.pid for p in processes() if p.pid == broker and p.state != "Z"] == [broker]
        stop = subprocess.run([sys.executable, "-m", "fraudstream", "--data-dir", str(data), *ports, "kafka", "stop"],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert f"Kafka broker stopped (pid {broker})" in stop.stdout
    else:
        assert "Kafka broker stopped" in text
    time.sleep(1)
    left = [p for p in processes() if p.pid in group and p.state != "Z"]
    assert left == []
    assert not (data / "kafka" / "broker.pid").exists()
