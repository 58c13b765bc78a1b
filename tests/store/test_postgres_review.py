"""Review findings on the PostgreSQL store, each reproduced on a real server: several writers
and readers that follow ids, NUL characters, a lost COMMIT reply, passwords in messages, a
schema that does not exist."""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import threading
import time

import psycopg
import pytest

from fraudstream.cli.main import main
from fraudstream.config import load_settings, redact_url
from fraudstream.detectors import VelocityDetector
from fraudstream.evaluation.alerts import load_alerts_store
from fraudstream.events.model import DeadLetter
from fraudstream.model.train import read_verdicts
from fraudstream.store import AlertStore, BatchWriter, db, mirror, queries, schema
from fraudstream.store.alert_store import OffsetConflict
from fraudstream.store.db import Location
from fraudstream.store.reviews import Review, add_review
from fraudstream.store.schema import SchemaTooNew
from fraudstream.store.server import LocalPostgres
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


def test_nul_characters_are_stored_on_postgresql_as_the_replacement_character(postgres_url):
    """PostgreSQL TEXT cannot hold NUL: one such character must not stop the copier for good."""
    record = (
        b'{"alert_id":"a1","alert_type":"X","severity":"HIGH","key":"u","user_id":"u\\u0000","device_id":"d",'
        b'"transaction_id":"t","amount":1,"message":"m\\u0000","event_time":1}'
    )
    alert = mirror._alert(record)  # passes the copier's checks
    letter = DeadLetter("unparseable", "bad\x00json", "{\x00}", 1, letter_id="raw/0@1")
    store = AlertStore(Location("postgresql", url=postgres_url))
    try:
        store.write_batch([alert, letter], {("alerts", 0): (None, 1)})
        add_review(store.conn, Review("a1", "confirmed_fraud", "note\x00here", "ana", 5))
        row = store.conn.execute("SELECT user_id, message FROM fraud_alerts").fetchone()
        assert (row[0], row[1]) == ("u\ufffd", "m\ufffd")
        dead = store.conn.execute("SELECT detail, raw FROM dead_letters").fetchone()
        assert (dead[0], dead[1]) == ("bad\ufffdjson", "{\ufffd}")
        assert store.conn.execute("SELECT note FROM alert_reviews").fetchone()[0] == "note\ufffdhere"
        assert store.stored_offsets("alerts") == {0: 1}
    finally:
        store.close()


def test_a_record_postgresql_refuses_becomes_an_unstorable_dead_letter(postgres_url):
    """A value the database cannot hold (a DataError, the same on every retry) is set aside as
    the copier's `unstorable` dead letter; the rest of its batch is stored with the offsets."""
    store = AlertStore(Location("postgresql", url=postgres_url))
    good, bad = alerts(2)
    bad = dataclasses.replace(bad, event_time=2**64)  # beyond BIGINT: "bigint out of range"
    with pytest.raises(psycopg.DataError):
        store.write_batch([good, bad], {("alerts", 0): (None, 2)})
    copier = _bare_mirror(store)
    try:
        batch = copier.set_aside([good, bad], [("alerts/0@0", b"{}"), ("alerts/0@1", b'{"x": 1}')], RuntimeError())
        assert copier._write(batch, {("alerts", 0): (None, 2)}, None)
        assert [r[0] for r in store.conn.execute("SELECT alert_id FROM fraud_alerts")] == [good.alert_id]
        dead = store.conn.execute("SELECT reason, detail, raw, letter_id FROM dead_letters").fetchone()
        assert dead[0] == "unstorable" and "out of range" in dead[1] and dead[2] == '{"x": 1}'
        assert dead[3] == "alerts/0@1"
        assert store.stored_offsets("alerts") == {0: 2}
        assert copier.stats.unstorable == 1
    finally:
        store.close()


class _CommitThenLoseTheReply(AlertStore):
    """A store whose first write commits on the server, then fails as a lost reply would."""

    lost = 1  # set to 0: the next write loses its reply

    def _write(self, *args, **kwargs):
        super()._write(*args, **kwargs)
        if not self.lost:
            self.lost += 1
            raise psycopg.OperationalError("server closed the connection unexpectedly (test: the reply was lost)")


def _bare_mirror(store: AlertStore) -> mirror.TopicMirror:
    """The copier's writing side alone (no broker): what `_write` and `set_aside` use."""
    copier = mirror.TopicMirror.__new__(mirror.TopicMirror)
    copier.store, copier.stats, copier.identities = store, mirror.MirrorStats(), {}
    copier.max_backoff_s, copier.max_raw_chars = 0.05, 1000
    return copier


def test_a_lost_commit_reply_is_not_another_copier(store_flags):
    settings = load_settings(flags=store_flags)
    store = _CommitThenLoseTheReply(Location.of(settings))
    try:
        store.write_batch(alerts(2)[:1], {("alerts", 0): (None, 1)})
        store.lost = 0
        copier = _bare_mirror(store)
        batch = alerts(3)[1:]
        assert copier._write(batch, {("alerts", 0): (1, 3)}, None)  # retried: no OffsetConflict
        assert store.stored_offsets("alerts") == {0: 3}
        assert store.conn.execute("SELECT COUNT(*) FROM fraud_alerts").fetchone()[0] == 3
        assert copier.stats.failed_writes == 1
        # A real second writer is still refused: the store is not at this batch's end.
        with pytest.raises(OffsetConflict):
            store.write_batch(batch, {("alerts", 0): (1, 4)}, retry=True)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://ana:pw@h:5/db", "postgresql://ana:***@h:5/db"),
        ("postgresql://ana@h/db?password=s3&sslmode=require&sslpassword=k3", "postgresql://ana@h/db?password=***&sslmode=require&sslpassword=***"),
        ("postgresql://h/db?options=-csearch_path%3Dteam_a", "postgresql://h/db?options=-csearch_path%3Dteam_a"),
        ("postgresql://ana:pw@[::1/db", "postgresql://***"),  # urlsplit's ValueError: masked whole
        ("host=h password=s3 dbname=d", "host=h password=*** dbname=d"),
    ],
)  # fmt: skip
def test_redact_url_masks_every_password_and_never_raises(url, shown):
    assert redact_url(url) == shown


def test_a_malformed_url_or_a_query_password_never_reaches_the_screen(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FRAUDSTREAM_DATA_DIR", str(tmp_path))
    secret = "s3cr%zzet"
    for url in (f"postgresql://ana:{secret}@127.0.0.1:1/db", f"postgresql://ana:{secret}@[::1/db"):
        monkeypatch.setenv("FRAUDSTREAM_STORE__URL", url)
        for command in (("query", "stats"), ("store", "status"), ("store", "migrate")):
            code = main(list(command))
            err = capsys.readouterr().err
            assert code == 1 and "malformed store.url (postgresql://" in err, (command, err)
            assert len(err.strip().splitlines()) == 1 and secret not in err and "s3cr" not in err, err
    monkeypatch.setenv("FRAUDSTREAM_STORE__URL", "postgresql://ana@127.0.0.1:1/db?sslmode=require&password=s3cret")
    for command in (("config", "show"), ("store", "status")):
        main(list(command))
        out, err = capsys.readouterr()
        assert "s3cret" not in out + err and "password=***" in out + err, (command, out, err)


def test_a_stale_postmaster_pid_held_by_another_process_is_neither_trusted_nor_signalled(postgres_server, tmp_path):
    assert postgres_server.pid() is not None  # the real server is recognised
    root = tmp_path / "pg"
    (root / "data").mkdir(parents=True)
    (root / "password").write_text("x\n")
    victim = subprocess.Popen(["sleep", "60"])  # an unrelated process that got the old PID
    try:
        (root / "data" / "postmaster.pid").write_text(f"{victim.pid}\n{root / 'data'}\n")
        server = LocalPostgres(root, 1)
        assert server.pid() is None and not server.status().running
        assert server.stop(timeout_s=1) is False
        assert victim.poll() is None  # not signalled
    finally:
        victim.kill()
        victim.wait(5)


def test_a_search_path_schema_that_does_not_exist_is_one_line(postgres_database, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FRAUDSTREAM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FRAUDSTREAM_STORE__URL", f"{postgres_database}?options=-csearch_path%3Dno_such_team")
    for command in (("query", "stats"), ("store", "status"), ("store", "migrate")):
        code = main(list(command))
        err = capsys.readouterr().err
        assert code == 1 and len(err.strip().splitlines()) == 1, (command, err)
        assert "schema no_such_team does not exist in database tests: CREATE SCHEMA no_such_team first" in err, err
        assert "run first" not in err and "^" not in err


def test_a_database_error_in_a_command_is_its_primary_message(filled_pg, monkeypatch, capsys):
    """A query failing on the server (here: a table dropped under the reader) is one line, the
    server's primary message, never its caret line."""
    with psycopg.connect(filled_pg) as conn:
        conn.execute("DROP TABLE dead_letters")
    code = main(["query", "dead"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and "^" not in err, err
    assert 'relation "dead_letters" does not exist' in err and "LINE" not in err


@pytest.fixture
def filled_pg(postgres_url, tmp_path, monkeypatch):
    monkeypatch.setenv("FRAUDSTREAM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FRAUDSTREAM_STORE__URL", postgres_url)
    AlertStore(Location("postgresql", url=postgres_url)).close()
    return postgres_url


def test_top_keys_skip_null_keys_and_break_ties_by_code_point_on_both(store, settings):
    made = alerts(6)
    keys = [("b", None), ("B", None), ("a", "d1"), ("b", "d1"), ("B", "d2"), ("a", None)]
    store.write_batch([dataclasses.replace(a, user_id=u, device_id=d) for a, (u, d) in zip(made, keys, strict=True)])
    conn = queries.open_read_only(settings)
    try:
        users = queries.top_keys(conn, "user_id", 10, None, None)
        assert [(r["key"], r["alerts"]) for r in users] == [("B", 2), ("a", 2), ("b", 2)]  # code point: B < a < b
        devices = queries.top_keys(conn, "device_id", 10, None, None)
        assert [(r["key"], r["alerts"]) for r in devices] == [("d1", 2), ("d2", 1)]  # no NULL device
        assert [r["user_id"] for r in queries.stats(conn, 0)["top_users"]] == ["B", "a", "b"]
    finally:
        conn.close()


def test_a_commit_that_rolled_back_is_an_error_not_a_success(postgres_url):
    store = AlertStore(Location("postgresql", url=postgres_url))
    try:
        refused = pytest.raises(psycopg.errors.InFailedSqlTransaction, match="rolled back, not committed")
        with refused, store.conn.transaction() as cur:
            cur.execute("INSERT INTO fraud_alerts (alert_id, alert_type, severity) VALUES ('z', 'X', 'HIGH')")
            with contextlib.suppress(psycopg.Error):
                cur.execute("SELECT 1/0")  # aborts the transaction; the error is swallowed
        assert store.conn.execute("SELECT COUNT(*) FROM fraud_alerts").fetchone()[0] == 0
        assert not store.conn.in_transaction
        store.write_batch(alerts(1))  # the connection is usable again
    finally:
        store.close()


def test_evaluate_and_training_refuse_a_newer_store_in_one_line(store, settings):
    store.write_batch(alerts(1))
    with store.conn.transaction() as cur:
        cur.execute("INSERT INTO schema_version (version, name, applied_at) VALUES (99, 'future', 0)")
    for read in (lambda: load_alerts_store(settings), lambda: read_verdicts(Location.of(settings))):
        with pytest.raises(SchemaTooNew, match="schema version 99, newer than this fraudstream knows") as err:
            read()
        assert "\n" not in str(err.value)


def test_a_migration_waits_for_another_beyond_lock_timeout_then_says_so_in_one_line(postgres_url):
    conn = db.connect(Location("postgresql", url=postgres_url), busy_timeout_ms=100)
    other = psycopg.connect(postgres_url, autocommit=True)
    try:
        other.execute("SELECT pg_advisory_lock(%s)", (schema._MIGRATION_LOCK,))  # a long migration elsewhere
        started = time.monotonic()
        with pytest.raises(schema.MigrationBusy, match="being migrated by another process") as err:
            schema.migrate(conn, lock_wait_s=0.6)
        assert time.monotonic() - started >= 0.5  # waited past lock_timeout (0.1 s)
        assert "\n" not in str(err.value) and not conn.in_transaction
        other.execute("SELECT pg_advisory_unlock(%s)", (schema._MIGRATION_LOCK,))
        assert schema.migrate(conn, lock_wait_s=0.6) == schema.LATEST
        assert conn.execute("SHOW lock_timeout").fetchone()[0] == "100ms"  # the usual one again
    finally:
        other.close()
        conn.close()


def test_the_embedded_runs_batch_writer_on_a_postgresql_store(postgres_url, tmp_path):
    """What `fraudstream run` does with `AlertStore.open(settings)`: a BatchWriter over its
    write_batch, on PostgreSQL; a session the server ends between batches is opened again."""
    settings = load_settings(flags={"store.url": postgres_url, "data_dir": str(tmp_path)}, environ={})
    store = AlertStore.open(settings)
    writer = BatchWriter(store.write_batch, batch_size=10, flush_interval_s=0.05, max_backoff_s=0.2)
    try:
        made = alerts(30)
        for a in made[:15]:
            writer.submit(a)
        writer.flush()
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (store.conn.raw.info.backend_pid,))
        for a in made[15:]:
            writer.submit(a)
        writer.close(timeout=20)
        assert writer.written == 30 and writer.pending == 0
        assert store.conn.execute("SELECT COUNT(*) FROM fraud_alerts").fetchone()[0] == 30
    finally:
        store.close()
