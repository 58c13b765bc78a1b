"""Versioned migrations: the same schema on both databases, old SQLite files upgraded in place,
concurrent migrators, and readers that never migrate and refuse a store newer than they know."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from fraudstream.config import load_settings
from fraudstream.errors import UserFacingError
from fraudstream.store import AlertStore, StoreMissingError, db, queries, schema
from fraudstream.store.db import Location
from tests.store.test_store import OLD_SCHEMA, alerts

TABLES = {
    "fraud_alerts", "dead_letters", "source_offsets", "source_topics", "alert_reviews",
    "notify_receivers", "notify_sent", "schema_version",
}  # fmt: skip


def _tables(conn: db.Connection) -> dict[str, list[str]]:
    return {t: conn.columns(t) for t in sorted(TABLES) if conn.has_table(t)}


def test_both_databases_get_the_same_schema(tmp_path, postgres_url):
    lite = AlertStore(tmp_path / "a.db")
    pg = AlertStore(Location("postgresql", url=postgres_url))
    try:
        assert set(_tables(lite.conn)) == TABLES
        assert _tables(lite.conn) == _tables(pg.conn)
        assert schema.version(lite.conn) == schema.version(pg.conn) == schema.LATEST
        # The PostgreSQL types that matter: 64-bit times and ids, doubles, an identity id.
        kinds = dict(
            pg.conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'fraud_alerts'"
            ).fetchall()
        )
        assert kinds["id"] == kinds["event_time"] == kinds["detected_at"] == "bigint"
        assert kinds["amount"] == kinds["risk"] == "double precision"
    finally:
        lite.close()
        pg.close()


def test_an_old_sqlite_file_is_upgraded_in_place(tmp_path):
    """A file from before versions (no schema_version, no letter_id/risk/held_back, no
    reviews, source_topics or ledger tables) becomes the latest schema, its rows kept."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_SCHEMA)
        conn.execute(
            "INSERT INTO fraud_alerts (alert_id, alert_type, severity, user_id, event_time) "
            "VALUES ('old', 'VELOCITY_FRAUD', 'HIGH', 'u_1', 1)"
        )
    reader = queries.open_read_only(path)
    assert schema.version(reader) == 0 and not reader.has_table("alert_reviews")
    reader.close()
    store = AlertStore(path)
    assert set(_tables(store.conn)) == TABLES
    assert [v for v, _, _ in schema.history(store.conn)] == list(range(1, schema.LATEST + 1))
    rows = store.conn.execute("SELECT alert_id, held_back, risk FROM fraud_alerts").fetchall()
    assert [tuple(r) for r in rows] == [("old", 0, None)]
    assert store.stored_offsets("dlq") == {0: 1}
    store.write_batch(alerts(2))
    store.close()
    again = AlertStore(path)  # nothing left to do
    assert len(schema.history(again.conn)) == schema.LATEST
    assert again.conn.execute("SELECT COUNT(*) FROM fraud_alerts").fetchone()[0] == 3
    again.close()


def test_concurrent_migrators_apply_each_migration_once(store_flags):
    settings = load_settings(flags=store_flags)
    loc = Location.of(settings)
    db.connect(loc, create=True).close()
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def migrate() -> None:
        try:
            conn = db.connect(loc, busy_timeout_ms=10_000)
            try:
                start.wait()
                schema.migrate(conn)
            finally:
                conn.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    conn = db.connect(loc)
    assert [v for v, _, _ in schema.history(conn)] == list(range(1, schema.LATEST + 1))
    conn.close()


def test_readers_never_migrate_and_refuse_a_newer_store(store_flags):
    settings = load_settings(flags=store_flags)
    store = AlertStore.open(settings)
    # An older store (version 2, no ledger): a reader reads it as it is, and leaves it so.
    with store.conn.transaction() as cur:
        cur.execute("DROP TABLE notify_sent")
        cur.execute("DELETE FROM schema_version WHERE version >= 3")
    reader = queries.open_read_only(settings)
    assert schema.version(reader) == 2 and not reader.has_table("notify_sent")
    assert queries.alert_count(reader) == 0
    reader.close()
    assert schema.version(store.conn) == 2
    # A newer one, migrated by a later fraudstream: refused in one line, by readers and writers.
    with store.conn.transaction() as cur:
        cur.execute("INSERT INTO schema_version (version, name, applied_at) VALUES (99, 'future', 0)")
    for opening in (lambda: queries.open_read_only(settings), lambda: AlertStore.open(settings)):
        with pytest.raises(schema.SchemaTooNew, match="schema version 99, newer than this fraudstream knows") as err:
            opening()
        assert isinstance(err.value, UserFacingError) and "\n" not in str(err.value)
    store.close()


def test_a_missing_database_or_table_is_store_missing(tmp_path, postgres_server, postgres_url):
    missing_db = postgres_url.rsplit("/", 1)[0] + "/no_such_db"  # the database, not the schema
    for loc in (Location("sqlite", path=tmp_path / "none.db"), Location("postgresql", url=missing_db)):
        with pytest.raises(StoreMissingError):
            queries.open_read_only(loc)
    with pytest.raises(db.SchemaMissing, match="schema .* does not exist in database"):
        queries.open_read_only(Location("postgresql", url=postgres_url[:-3] + "zzz"))  # a schema that is not there
    with pytest.raises(StoreMissingError, match="no fraud_alerts table"):
        queries.open_read_only(Location("postgresql", url=postgres_url))  # created, empty
    wrong = postgres_url.replace(postgres_server.password, "not-the-password")
    with pytest.raises(db.StoreUnreachable, match="password authentication failed") as err:
        queries.open_read_only(Location("postgresql", url=wrong))
    assert "not-the-password" not in str(err.value) and "\n" not in str(err.value)
