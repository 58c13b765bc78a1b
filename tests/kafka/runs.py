"""What the Kafka-run tests read while a run goes on."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def stored_alerts(db: Path) -> int:
    """Alerts in the store so far; 0 while it does not exist yet or is locked."""
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM fraud_alerts").fetchone()[0]
    except sqlite3.Error:
        return 0
