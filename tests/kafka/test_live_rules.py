"""Live rule changes against the real broker and one running job (issue 17), judged by the
versioned oracle (tests/oracle.py::expected_alerts_versioned).

One unbounded run at parallelism 2 goes through a script, in event-time order:

1. version 1, published once the job reads the rules topic, asks to apply from an explicit
   event time in the middle of the stream (a threshold tightened, one raised, a window widened,
   a severity and a cooldown changed);
2. version 2, with no effective time, is published mid-stream (velocity tightened, geo switched
   off): the job applies it from the watermark, a cut time E2 found from the alerts;
3. invalid messages (not JSON, a window above its maximum, an old version again) are dead
   letters and change nothing;
4. the run is killed (SIGKILL); `--resume` keeps the versions in force (the alerts after the
   resume follow version 2, not the settings) and reads on from its rules offsets (an invalid
   message published while it was down is its dead letter); version 3, published once the
   resumed job is past the kill, applies from its own cut E3; every alert exactly once.

At the end the alerts of the alerts topic and of the store must be exactly the oracle's for the
schedule (version 0 from the start, 1 from its time, 2 from E2, 3 from E3), version by version,
with the severity each version gives. The stream's users and devices fall on both subtasks of
the rule steps, so the equality also says that both applied each version at the same time.

Every job-side fact the script waits for is observed, never slept for: a marker message (an
invalid one) on the rules topic is followed by its dead letter in the dead-letter topic
(read_committed): once it is there, the job has taken in every rules message before it.
"""

from __future__ import annotations

import dataclasses
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from fraudstream.config import KafkaSettings, Settings
from fraudstream.generator import OrderGenerator
from fraudstream.kafka.clients import connect_admin, ensure_topics
from fraudstream.kafka.tail import alert_from_json
from fraudstream.rules.model import Limits, RuleSet
from tests.kafka.conftest import consume, free_port, kafka_flags, kill_hard, send
from tests.lines import in_own_session
from tests.oracle import expected_alerts_versioned, schedule_of, severity_of

EXE = [sys.executable, "-m", "fraudstream"]
MIN = 60_000
PARALLELISM = 2
MAX_PARALLELISM = 128  # pipeline.max_parallelism's default: the key groups
SETTINGS = Settings()
LIMITS = Limits.from_settings(SETTINGS)
V0 = RuleSet.from_settings(SETTINGS)
N = 2_400  # orders: about 70 minutes of event time from the generator


def _orders() -> list[dict]:
    orders = list(OrderGenerator(seed=1717, users=40).orders(N))
    assert all(b["event_time"] >= a["event_time"] - 5_000 for a, b in zip(orders, orders[1:], strict=False))
    return orders


def _records(orders: list[dict]) -> list[tuple[int | None, bytes | None, bytes]]:
    return [(None, o["user_id"].encode(), orjson.dumps(o)) for o in orders]


def _java_hash(s: str) -> int:
    """String.hashCode: over the UTF-16 code units, as 32-bit unsigned here."""
    units = s.encode("utf-16-be")
    h = 0
    for i in range(0, len(units), 2):
        h = (31 * h + int.from_bytes(units[i : i + 2], "big")) & 0xFFFFFFFF
    return h


def _subtask(key: str, parallelism: int = PARALLELISM) -> int:
    """Which subtask of a keyed step a String key lands on (Flink's KeyGroupRangeAssignment:
    murmur hash of String.hashCode, modulo the key groups, then the group's range)."""

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & 0xFFFFFFFF

    h = _java_hash(key)
    h = (h * 0xCC9E2D51) & 0xFFFFFFFF
    h = rotl(h, 15)
    h = (h * 0x1B873593) & 0xFFFFFFFF
    h = rotl(h, 13)
    h = (h * 5 + 0xE6546B64) & 0xFFFFFFFF
    h ^= 4
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    signed = h - (1 << 32) if h & 0x80000000 else h
    murmur = signed if signed >= 0 else (-signed if signed != -(2**31) else 0)
    return (murmur % MAX_PARALLELISM) * parallelism // MAX_PARALLELISM


@pytest.mark.parametrize(
    ("key", "subtask"), [("u_1", 0), ("u_2", 0), ("u_3", 1), ("u_17", 0), ("d_45", 1), ("d_1", 0), ("ü_ø€", 1)]
)
def test_the_subtask_of_a_key_is_flinks(key, subtask):
    """From Flink 2.2.1's KeyGroupRangeAssignment.assignKeyToParallelOperator(key, 128, 2)."""
    assert _subtask(key) == subtask


class Script:
    """The run's side of the script: the rules topic, markers, what the job has committed."""

    def __init__(self, k: KafkaSettings, rules_topic: str) -> None:
        self.k = k
        self.topic = rules_topic
        self.invalid: list[bytes] = []  # every invalid rules message published, in order
        self.stale: list[bytes] = []

    def publish(self, value: bytes, key: bytes | None = None) -> None:
        send(self.k, [(0, key, value)], topic=self.topic)

    def publish_version(self, rules: RuleSet) -> None:
        self.publish(rules.to_bytes(), str(rules.version).encode())

    def publish_invalid(self, value: bytes) -> None:
        self.invalid.append(value)
        self.publish(value, b"invalid")

    def letters(self) -> list[dict]:
        return [orjson.loads(v) for _, _, v in consume(self.k, self.k.dead_letter_topic)]

    def seen(self, value: bytes, reason: str = "invalid_rules") -> bool:
        text = value.decode("utf-8", "replace")
        return any(d["reason"] == reason and d.get("raw") == text for d in self.letters())

    def marker(self, proc: subprocess.Popen, timeout_s: float = 120, again_s: float | None = None) -> bytes:
        """Publish an invalid message and wait for its dead letter: the job has then taken in
        every rules message published before it. With `again_s`: a new marker every `again_s`
        seconds until one is seen (the job's rules source starts at the end of the topic the
        driver saw, so a marker published before that is never read)."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = orjson.dumps({"marker": uuid.uuid4().hex})
            self.publish_invalid(value)
            until = time.monotonic() + (again_s or timeout_s)
            while time.monotonic() < min(until, deadline):
                if self.seen(value):
                    return value
                _alive(proc)
                time.sleep(0.3)
            assert time.monotonic() < deadline, f"no dead letter for the rules marker after {timeout_s}s"

    def alerts(self) -> list[dict]:
        return [orjson.loads(v) for _, _, v in consume(self.k, self.k.alerts_topic)]


def _alive(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        tail = proc.stderr.read()[-4000:] if proc.stderr else ""
        raise AssertionError(f"the run ended (exit {proc.returncode}):\n{tail}")


def _until(what: str, check: Callable[[], bool], proc: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        _alive(proc)
        assert time.monotonic() < deadline, f"no {what} after {timeout_s}s"
        time.sleep(0.3)


def _command(k: KafkaSettings, data: Path, rules_topic: str, job_port: int, *extra: str) -> list[str]:
    return [
        *EXE, "--data-dir", str(data), *kafka_flags(k),
        "--set", f"rules.topic={rules_topic}",
        "--set", f"pipeline.parallelism={PARALLELISM}",
        "--set", "checkpoint.interval_ms=1000",
        "--set", "checkpoint.backlog_interval_ms=1000",
        "--set", "checkpoint.restart_max_backoff_ms=4000",
        "--set", f"metrics.job_port={job_port}",
        "--set", "metrics.process_port=0",
        "run", "--source", "kafka", "--start-from", "earliest", *extra,
    ]  # fmt: skip


def _clock_orders(after: dict) -> list[dict]:
    """One order per partition an hour later, from fresh users and devices: every partition's
    event time moves past the stream's end; they alert on nothing."""
    t = after["event_time"] + 3_600_000
    return [
        {**after, "transaction_id": f"clock-{p}", "user_id": f"u_clock{p}", "device_id": f"d_clock{p}",
         "amount": 10.0, "city": "Pune", "event_time": t + p, "partition": p}
        for p in range(4)
    ]  # fmt: skip


def _sentinel(after: dict) -> list[dict]:
    """Five orders of a fresh user within a minute, ten minutes after the stream: a velocity
    alert under every version of the script (thresholds 1 to 3), the last alert event time makes."""
    t = after["event_time"] + 10 * MIN
    return [
        {**after, "transaction_id": f"sentinel-{i}", "user_id": "u_sentinel", "device_id": "d_sentinel",
         "amount": 50.0, "city": "Pune", "event_time": t + i * 10_000}
        for i in range(5)
    ]  # fmt: skip


def _metric(url: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples with these labels on a Prometheus endpoint."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or name not in line.split("{")[0]:
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _cut_candidates(alerts: set[tuple], orders: list[dict], version: int, floor: int) -> list[int]:
    """Where a version with no effective time can have been applied from: after every alert of
    the versions before it (and after `floor`), at or before its own first alert; any time
    between two orders' times judges like the later one, so the orders' times are the candidates."""
    mine = [a[3] for a in alerts if a[4] == version]
    assert mine, f"no alert carries version {version}: it was never applied"
    lo = max([floor, *(a[3] for a in alerts if a[4] < version)])
    hi = min(mine)
    return sorted({o["event_time"] for o in orders if lo < o["event_time"] <= hi})


@pytest.mark.flink
def test_rule_versions_apply_at_their_event_times_across_a_kill_and_resume(kafka, tmp_path):
    started = time.monotonic()
    orders = _orders()
    users = {o["user_id"] for o in orders}
    devices = {o["device_id"] for o in orders}
    assert {_subtask(u) for u in users} == {0, 1} and {_subtask(d) for d in devices} == {0, 1}
    t = [o["event_time"] for o in orders]
    # s3 before the kill, s3b after the resume (under the restored version 2, before version 3)
    s1, s2, s3, s3b = orders[:600], orders[600:1200], orders[1200:1500], orders[1500:1800]
    s4 = [*orders[1800:], *_sentinel(orders[-1])]
    clock = _clock_orders(s4[-1])

    v1 = dataclasses.replace(
        V0.with_changes(
            {
                "velocity.threshold": 2,
                "velocity.cooldown_ms": 2 * MIN,
                "high_value.threshold": 1000,
                "device_sharing.window_ms": 60 * MIN,
                "geo.severity": "LOW",
            },
            LIMITS,
            author="test",
            comment="scripted, from an explicit event time",
        ),
        effective_from=t[900],
    )
    v2 = v1.with_changes({"velocity.threshold": 1, "geo.enabled": False}, LIMITS, author="test")
    v3 = v2.with_changes({"velocity.threshold": 2, "high_value.enabled": False}, LIMITS, author="test")
    too_wide = dataclasses.replace(
        v2, version=99, rules={**v2.rules, "velocity": dataclasses.replace(v2.rules["velocity"], window_ms=120 * MIN)}
    )

    rules_topic = f"rules-{uuid.uuid4().hex[:8]}"
    ensure_topics(connect_admin(kafka), {rules_topic: 1})
    script = Script(kafka, rules_topic)
    data = tmp_path / "data"
    db = data / "fraud_alerts.db"
    job_port = free_port()
    command = _command(kafka, data, rules_topic, job_port)

    with in_own_session(command, stderr=subprocess.PIPE) as (proc, _):
        script.marker(proc, timeout_s=240, again_s=3)  # the job reads the rules topic now
        script.publish_version(v1)
        script.marker(proc)  # v1 stamped at its own time: no order has been sent yet
        send(kafka, _records([*s1, *s2]))
        # the watermark has passed t[1100]: an alert that late is committed
        _until("alert past t[1100]", lambda: any(a["event_time"] >= t[1100] for a in script.alerts()), proc)
        floor2 = t[1100]
        script.publish_version(v2)
        script.publish_invalid(b"not json {")
        script.publish_invalid(too_wide.to_bytes())  # window above its maximum: invalid, not version 99
        script.publish(v1.to_bytes(), b"1")  # an old version again: stale
        script.stale.append(v1.to_bytes())
        script.marker(proc)
        send(kafka, _records(s3))
        _until("alert past t[1400]", lambda: any(a["event_time"] >= t[1400] for a in script.alerts()), proc)
        assert proc.poll() is None
        kill_hard(proc)
    killed_at = max(a["event_time"] for a in script.alerts())  # the newest alert committed before the kill
    down_marker = orjson.dumps({"marker": "published while the job was down"})
    script.publish_invalid(down_marker)
    with in_own_session([*command, "--resume"], stderr=subprocess.PIPE) as (proc, lines):
        # read from the restored offsets: the message published while the job was down
        _until("the marker published while the job was down", lambda: script.seen(down_marker), proc)
        send(kafka, _records(s3b))
        _until("alert past t[1750]", lambda: any(a["event_time"] >= t[1750] for a in script.alerts()), proc)
        floor3 = t[1750]
        script.publish_version(v3)
        script.marker(proc)
        send(kafka, _records(s4))
        send(kafka, [(o.pop("partition"), b"clock", orjson.dumps(o)) for o in clock])
        _until("the sentinel's alert", lambda: any(a["user_id"] == "u_sentinel" for a in script.alerts()), proc)
        n, since = len(script.alerts()), time.monotonic()
        while time.monotonic() - since < 4:  # two more checkpoints: nothing left to commit
            time.sleep(0.5)
            if (m := len(script.alerts())) != n:
                n, since = m, time.monotonic()
        url = next((line.split(": ", 1)[1].strip() for line in lines.lines if line.startswith("job metrics:")), None)
        assert url, "the run printed no job metrics endpoint"
        counted = _metric(url, "reason_dead_letters", reason="invalid_rules")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        out = lines.finish()
    assert proc.returncode == 0, proc.stderr.read()[-3000:]
    assert "/chk-" in out  # "Starting from: .../chk-N"

    # ---- exactly once, and every alert's version -------------------------------------------
    topic = [alert_from_json(orjson.dumps(a)) for a in script.alerts()]
    keys = [(a.alert_type, a.key, a.transaction_id, a.event_time) for a in topic]
    assert not [k for k, c in Counter(keys).items() if c > 1], "alerts committed twice"
    got = {(a.alert_type, a.key, a.transaction_id, a.event_time, a.rule_version) for a in topic}
    assert None not in {a[4] for a in got}, "an alert without its rule version"
    assert {a[4] for a in got} == {0, 1, 2, 3}

    # ---- the cut times, and the oracle's alerts for them -------------------------------------
    stream = [*orders, *_sentinel(orders[-1]), *clock]
    fixed = [(None, V0, 0), (v1.effective_from, v1, 1)]
    found: list[tuple[int, int]] = []
    for e2 in _cut_candidates(got, stream, 2, floor2):
        for e3 in _cut_candidates(got, stream, 3, floor3):
            if expected_alerts_versioned(stream, [*fixed, (e2, v2, 2), (e3, v3, 3)]) == got:
                found.append((e2, e3))
    assert found, "no cut times make the alerts the oracle's: " + _diff(got, stream, fixed, v2, v3, floor2, floor3)
    e2, e3 = found[0]
    schedule = schedule_of([*fixed, (e2, v2, 2), (e3, v3, 3)])
    # every version made a difference, so the equality says something about each
    for n in range(1, 4):
        assert expected_alerts_versioned(stream, schedule[:n]) != got
    # the kill came after E2, E3 after the resume: after it, version 2 (restored, not the
    # settings' velocity threshold 3 and geo on) until E3
    assert e2 <= killed_at < floor3 < e3
    resumed = {a for a in got if killed_at < a[3] < e3}
    assert resumed and {a[4] for a in resumed} == {2}
    assert not [a for a in got if a[0] == "GEO_ANOMALY_FRAUD" and a[3] >= e2]  # switched off at E2
    assert not [a for a in got if a[0] == "HIGH_VALUE_FRAUD" and a[3] >= e3]  # and high value at E3
    severities = {(a.alert_type, a.key, a.transaction_id, a.event_time): a.severity for a in topic}
    assert {a: severities[a[:4]] for a in got} == {a: severity_of(schedule, a) for a in got}
    # both subtasks of each keyed rule step raised alerts of the changed versions
    for version in (1, 2, 3):
        mine = [a for a in got if a[4] == version]
        assert {_subtask(a[1]) for a in mine if a[0] != "DEVICE_SHARING_FRAUD"} == {0, 1}
    assert {_subtask(a[1]) for a in got if a[0] == "DEVICE_SHARING_FRAUD" and a[4] >= 1} == {0, 1}

    # ---- the store: the same alerts with the same versions -----------------------------------
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT alert_type, user_id, device_id, transaction_id, event_time, rule_version FROM fraud_alerts"
        ).fetchall()
        stored_letters = Counter(r for (r,) in conn.execute("SELECT reason FROM dead_letters"))
    stored = [(k, d if k == "DEVICE_SHARING_FRAUD" else u, x, e, v) for k, u, d, x, e, v in rows]
    assert len(stored) == len(got) and set(stored) == got

    # ---- the rejected messages: each one dead letter, counted, none applied ------------------
    letters = script.letters()
    rejected = [d["raw"].encode() for d in letters if d["reason"] == "invalid_rules"]
    assert len(rejected) == len(set(rejected)), "an invalid rules message rejected twice"
    assert set(rejected) <= set(script.invalid)
    first_seen = min(script.invalid.index(r) for r in rejected)
    assert set(rejected) == set(script.invalid[first_seen:])
    stale = [d["detail"] for d in letters if d["reason"] == "stale_rules"]
    assert len(stale) == len(script.stale) and all("version 1 " in d for d in stale), stale
    by_reason = Counter(d["reason"] for d in letters)
    assert by_reason == Counter(invalid_rules=len(rejected), stale_rules=len(script.stale))
    assert stored_letters == by_reason
    assert counted == 2  # the resumed run's metric: the invalid messages it read (the one sent while down, a marker)
    wall = time.monotonic() - started
    print(
        f"live rules: {len(got)} alerts, cuts E2={e2 - t[0]} ms E3={e3 - t[0]} ms after the first order, {wall:.0f} s"
    )


def _diff(got: set, stream: list[dict], fixed: list, v2: RuleSet, v3: RuleSet, floor2: int, floor3: int) -> str:
    """What differs from the oracle at the first candidate cuts (for the failure message)."""
    try:
        e2 = _cut_candidates(got, stream, 2, floor2)[0]
        e3 = _cut_candidates(got, stream, 3, floor3)[0]
    except (AssertionError, IndexError) as e:
        return str(e)
    want = expected_alerts_versioned(stream, [*fixed, (e2, v2, 2), (e3, v3, 3)])
    return f"at E2={e2}, E3={e3}: missing {sorted(want - got)[:5]}, unexpected {sorted(got - want)[:5]}"
