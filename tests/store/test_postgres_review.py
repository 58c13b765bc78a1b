"""Review findings on the PostgreSQL store, each reproduced on a real server: several writers
and readers that follow ids, NUL characters, a lost COMMIT reply, passwords in messages, a
schema that does not exist."""

from __future__ import annotations

import dataclasses
import threading

from fraudstream.detectors import VelocityDetector
from fraudstream.store import AlertStore, queries
from fraudstream.store.db import Location
from tests.conftest import BASE, make_order


def alerts(n, user="u_1", prefix=""):
    det = VelocityDetector(threshold=0)
    out = [det.make_alert(make_order(BASE + i, user=user), f"msg {i}", {"i": i}) for i in range(n)]
    return [dataclasses.replace(a, alert_id=f"{prefix}{a.alert_id}") for a in out]


def test_two_writers_on_one_postgresql_store_never_make_a_follower_skip_rows(postgres_url):
    """Readers follow "id > last seen": with two writers, ids must commit in order."""
    loc = Location("postgresql", url=postgres_url)
    writers = [AlertStore(loc), AlertStore(loc)]
    reader = queries.open_read_only(loc)
    batches = 60
    done = threading.Event()
    errors: list[BaseException] = []

    def write(store: AlertStore, name: str) -> None:
        try:
            for b in range(batches):
                store.write_batch(alerts(5, user=f"{name}{b}", prefix=f"{name}{b}-"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, n)) for s, n in zip(writers, "ab", strict=True)]
    seen: set[int] = set()
    last = 0
    try:
        for t in threads:
            t.start()
        while not done.is_set():
            done.set() if not any(t.is_alive() for t in threads) else None
            for row in queries.after_id(reader, last, 1000):
                seen.add(row["id"])
                last = row["id"]
        assert not errors
        every = {r[0] for r in writers[0].conn.execute("SELECT id FROM fraud_alerts")}
        assert len(every) == 2 * batches * 5
        assert every - seen == set()  # no row skipped for good
    finally:
        for t in threads:
            t.join()
        reader.close()
        for s in writers:
            s.close()
