"""One short `fraudstream run` as a user runs it: what it listens on, what its REST API tells
browsers, the modes of what it writes, and an archive path with a quote in it."""

from __future__ import annotations

import stat
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from tests.lines import in_own_session
from tests.sockets import descendants, not_loopback

pytestmark = pytest.mark.flink
EXE = [sys.executable, "-m", "fraudstream"]


def test_a_run_listens_on_loopback_only_and_keeps_its_files_private(tmp_path):
    data = tmp_path / "data"
    archive = tmp_path / "it's" / "archive"  # a quote: the path reaches the JVM as it is
    command = [
        *EXE, "--data-dir", str(data), "run", "--engine", "datastream", "--count", "2500", "--rate", "250", "--seed", "5",
        "--set", f"archive.path=file://{archive}",
    ]  # fmt: skip
    with open(tmp_path / "stderr.txt", "w+") as stderr:
        with in_own_session(command, stderr=stderr) as (proc, out):
            assert out.wait_for("ALERT", 1, 120, proc), "no alert within two minutes"
            info = data / "job.json"
            deadline = time.monotonic() + 30
            while not info.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            rest_port = orjson.loads(info.read_bytes())["rest_port"]
            # the driver, Flink's JVM and any Python worker it started
            wide = not_loopback(descendants(proc.pid))
            request = urllib.request.Request(
                f"http://127.0.0.1:{rest_port}/config", headers={"Origin": "http://evil.example"}
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                allowed = response.headers.get("Access-Control-Allow-Origin")
            proc.wait(120)
        stderr.seek(0)
        err = stderr.read()
    assert proc.returncode == 0, err[-2000:]
    assert wide == {}, f"listening beyond loopback: {wide}"
    assert allowed in (None, ""), f"the REST API lets {allowed!r} read it"

    # the archive wrote (and Parquet's SNAPPY codec, Flink's own snappy-java, reads back)
    assert _rows(archive / "orders") > 0
    loose = [
        f"{oct(p.stat().st_mode & 0o777)} {p}"
        for root in (data, archive)
        for p in [root, *root.rglob("*")]
        if not p.is_symlink() and stat.S_IMODE(p.stat().st_mode) & 0o077
    ]
    assert loose == [], "readable by others:\n" + "\n".join(loose[:20])
    for name in ("fraud_alerts.db", "app.log"):
        assert (data / name).exists()


def _rows(folder: Path) -> int:
    import pyarrow.dataset as ds

    return ds.dataset(folder, format="parquet", partitioning="hive").count_rows()
