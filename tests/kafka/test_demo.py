"""`fraudstream demo` as a user runs it: broker, producer and job together; Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from fraudstream.flink.gateway import processes
from tests.kafka.conftest import free_port

pytestmark = pytest.mark.flink


def test_demo_shows_alerts_and_ctrl_c_leaves_nothing_running(tmp_path):
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fraudstream", "--data-dir", str(data),
         "--set", f"broker.port={free_port()}", "--set", f"broker.controller_port={free_port()}",
         "demo", "--rate", "200"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    seen: list[str] = []
    deadline = time.monotonic() + 150
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if sum(1 for s in seen if s.startswith("ALERT")) >= 5 or time.monotonic() > deadline:
                break
        group = [p.pid for p in processes() if p.pgid == proc.pid and p.state != "Z"]
        assert len(group) >= 3  # the demo, its producer, the broker and Flink's JVM
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = "".join(seen) + out
    assert sum(1 for s in seen if s.startswith("ALERT")) >= 5, err[-2000:]
    assert proc.returncode == 0, err[-2000:]
    assert "Producer stopped" in text and "Kafka broker stopped" in text
    assert "Traceback" not in err
    time.sleep(1)
    left = [p for p in processes() if p.pid in group and p.state != "Z"]
    assert left == []
    assert not (data / "kafka" / "broker.pid").exists()
