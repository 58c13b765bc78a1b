"""`fraudstream run` with a webhook set: the run's notifier sends the CRITICAL alerts its store holds."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from tests.notify.servers import alert_id

pytestmark = pytest.mark.flink


def test_a_run_notifies_the_critical_alerts_it_stored(tmp_path, webhook):
    data = tmp_path / "data"
    shares = json.dumps({"account_farm": 1, "high_value": 1})
    proc = subprocess.run(
        [sys.executable, "-m", "fraudstream", "--data-dir", str(data), "run", "--count", "1500", "--seed", "3",
         "--rate", "0", "--set", f"generator.pattern_shares={shares}", "--set", f"notify.webhook_url={webhook.url()}",
         "--set", "notify.burst_max=1000", "--set", "archive.enabled=false"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    with sqlite3.connect(data / "fraud_alerts.db") as conn:
        critical = {r[0] for r in conn.execute("SELECT alert_id FROM fraud_alerts WHERE severity = 'CRITICAL'")}
        medium = conn.execute("SELECT COUNT(*) FROM fraud_alerts WHERE severity = 'MEDIUM'").fetchone()[0]
    assert len(critical) >= 3 and medium >= 3  # both kinds were stored
    sent = [alert_id(t) for t in webhook.texts]
    assert sorted(sent) == sorted(critical)  # each CRITICAL one once, no MEDIUM one
    assert "hooksecretXYZ" not in proc.stdout + proc.stderr + (data / "app.log").read_text()
