"""What the Kafka-run tests read while a run goes on."""

from __future__ import annotations

from pathlib import Path

from fraudstream.config import Settings
from fraudstream.store import db
from fraudstream.store.db import Location


def stored_alerts(where: Path | Settings) -> int:
    """Alerts in the store so far (a SQLite file, or the store of the settings: PostgreSQL at
    store.url); 0 while it does not exist yet or is locked."""
    loc = Location.of(where) if isinstance(where, Settings) else Location("sqlite", path=Path(where))
    try:
        with db.connect(loc, read_only=True, busy_timeout_ms=5_000) as conn:
            return conn.execute("SELECT count(*) FROM fraud_alerts").fetchone()[0]
    except (*db.ERRORS, db.StoreMissingError, db.StoreUnreachable):
        return 0
