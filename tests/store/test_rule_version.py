"""The rule version on each alert (schema version 4): stored by the writer, read back and
filtered by the readers, NULL for alerts from before it; a store at version 3 upgrades in place
and a reader that cannot migrate reads it as alerts without a version."""

from __future__ import annotations

import dataclasses

import orjson

from fraudstream.config import load_settings
from fraudstream.store import AlertStore, db, queries, schema
from tests.store.test_store import alerts


def _at_version_3(settings) -> None:
    """A store as fraudstream made it before live rules: migrations 1-3 only."""
    conn = db.connect(db.Location.of(settings), create=True)
    try:
        with conn.transaction() as cur:
            cur.execute(schema._sql(conn.dialect, schema._VERSION_TABLE))
            for m in schema.MIGRATIONS[:3]:
                schema._apply(conn, cur, m)
    finally:
        conn.close()


def test_a_version_3_store_gains_rule_version_and_each_alert_keeps_its_own(store_flags):
    settings = load_settings(flags=store_flags)
    _at_version_3(settings)
    conn = db.connect(db.Location.of(settings))
    with conn.transaction() as cur:  # a row as the old writer wrote it
        cur.execute(
            "INSERT INTO fraud_alerts (alert_id, alert_type, severity, user_id, event_time)"
            " VALUES ('old', 'VELOCITY_FRAUD', 'HIGH', 'u_1', 1)"
        )
    conn.close()

    reader = queries.open_read_only(settings)  # cannot migrate: reads no version, filters find none
    assert schema.version(reader) == 3 and not queries.has_rule_version(reader)
    assert [r["rule_version"] for r in queries.recent(reader, 5)] == [None]
    assert queries.recent(reader, 5, rule_version=0) == []
    assert queries.search(reader, queries.AlertFilter(rule_version=1), 1, 10).total == 0
    assert queries.alert(reader, "old")["rule_version"] is None
    reader.close()

    store = AlertStore.open(settings)  # the writer migrates
    try:
        assert schema.version(store.conn) == schema.LATEST >= 4
        batch = alerts(4)
        stamped = [dataclasses.replace(a, rule_version=v) for a, v in zip(batch, (0, 3, 3, None), strict=True)]
        store.write_batch(stamped)
        store.write_batch(stamped)  # a replay changes nothing
    finally:
        store.close()

    reader = queries.open_read_only(settings)
    try:
        got = {r["alert_id"]: r["rule_version"] for r in queries.recent(reader, 10)}
        assert got == {"old": None, **{a.alert_id: a.rule_version for a in stamped}}
        assert sorted(r["alert_id"] for r in queries.recent(reader, 10, rule_version=3)) == sorted(
            a.alert_id for a in stamped[1:3]
        )
        assert [r["alert_id"] for r in queries.for_user(reader, "u_1", 10, rule_version=0)] == [stamped[0].alert_id]
        page = queries.search(reader, queries.AlertFilter(rule_version=3), 1, 10)
        assert page.total == 2 and {r["rule_version"] for r in page.rows} == {3}
        assert queries.alert(reader, stamped[1].alert_id)["rule_version"] == 3
        assert [r["rule_version"] for r in queries.after_id(reader, 0, 10)] == [None, 0, 3, 3, None]
        if reader.dialect == "sqlite":
            plan = " ".join(
                r[3] for r in reader.execute("EXPLAIN QUERY PLAN SELECT id FROM fraud_alerts WHERE rule_version = 3")
            )
            assert "idx_alerts_rule_version" in plan
    finally:
        reader.close()


def test_query_shows_and_filters_the_rule_version(tmp_path, capsys):
    from fraudstream.cli.main import main

    path = tmp_path / "a.db"
    batch = alerts(3)
    store = AlertStore(path)
    store.write_batch([dataclasses.replace(a, rule_version=v) for a, v in zip(batch, (2, 7, None), strict=True)])
    store.close()

    assert main(["query", "--db", str(path), "all"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[1].split()
    assert header[header.index("severity") + 1] == "rules"  # beside the severity it set
    assert sorted(line.split()[header.index("rules")] for line in lines[3:]) == ["-", "v2", "v7"]
    assert main(["query", "--db", str(path), "all", "--rule-version", "7", "--json"]) == 0
    rows = orjson.loads(capsys.readouterr().out)
    assert [(r["alert_id"], r["rule_version"]) for r in rows] == [(batch[1].alert_id, 7)]
    assert main(["query", "--db", str(path), "user", "u_1", "--rule-version", "0"]) == 0
    assert "(0 shown)" in capsys.readouterr().out
    # A store without versions lists as before: no rules column.
    plain = tmp_path / "plain.db"
    store = AlertStore(plain)
    store.write_batch(batch)
    store.close()
    assert main(["query", "--db", str(plain), "all"]) == 0
    assert "rules" not in capsys.readouterr().out.splitlines()[1]
