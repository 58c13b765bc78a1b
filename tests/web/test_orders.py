"""An alert's record with its orders read back from a real Parquet archive (written as the job
writes it): exactly the orders of the rule's window, the triggering order with all its fields,
and a plain reason when the archive cannot say (not yet committed, off, missing, corrupt)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fraudstream.detectors import DeviceSharingDetector, HighValueDetector, VelocityDetector
from fraudstream.web import orders as web_orders
from tests.conftest import BASE, MIN, make_order
from tests.web.conftest import LOCAL, TestClient, settings_for, write, write_archive

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

T = BASE + 62 * MIN  # 01:02 UTC: the velocity window (00:57, 01:02] spans two hour partitions
VELOCITY_MS = 300_000
DEVICE_MS = 1_800_000


def world():
    """u_v's orders around T (70 in its window, some just outside), another user's on the same
    device, and unrelated ones; the triggering order carries extra fields of its producer."""
    trigger = replace(
        make_order(T, user="u_v", device="d_v", tx="t_trigger"),
        restaurant_id="r_9",
        payment_method="CARD",
        city="Pune",
        extra={"order_id": "o-77", "device_type": "ios"},
    )
    out = [trigger]
    out += [make_order(T - 299_000 + k * 4_000, user="u_v", device="d_v", amount=100 + k) for k in range(70)]
    out += [make_order(t, user="u_v", device="d_v") for t in (T - VELOCITY_MS, T - 400_000, T + 1)]
    out += [make_order(T - k * 90_000, user="u_o", device="d_v", city="Delhi") for k in range(1, 25)]
    out += [make_order(T - k * MIN, user="u_x", device="d_x") for k in range(30)]
    return trigger, out


def brute(written, key: str, value: str, after: int, until: int) -> list[str]:
    """Every written order in the window, by a plain filter, newest first."""
    inside = [o for o in written if getattr(o, key) == value and after < o.event_time <= until]
    return [o.transaction_id for o in sorted(inside, key=lambda o: (-o.event_time, o.transaction_id))]


@pytest.fixture
def case(tmp_path):
    trigger, written = world()
    velocity = VelocityDetector(threshold=3, window_ms=VELOCITY_MS).make_alert(
        trigger, "User u_v placed 72 orders in 5 minutes", {"order_count": 72, "threshold": 3, "window_ms": VELOCITY_MS}
    )
    shared_order = next(o for o in written if o.user_id == "u_o")
    device = DeviceSharingDetector(window_ms=DEVICE_MS).make_alert(
        shared_order, "Device d_v used by 2 users", {"users": ["u_o", "u_v"], "window_ms": DEVICE_MS}
    )
    big = HighValueDetector().make_alert(trigger, "User u_v spent a lot", {"amount": 300.0})
    alerts = [replace(a, detected_at=a.event_time + 1_000) for a in (velocity, device, big)]
    return tmp_path, trigger, written, alerts


def record(tmp_path, alert_id: str, **overrides: object) -> dict:
    from fraudstream.web import create_app

    s = settings_for(tmp_path, **overrides)
    with TestClient(create_app(s), base_url=LOCAL) as c:
        r = c.get(f"/api/alerts/{alert_id}")
        assert r.status_code == 200
        return r.json()


def test_a_velocity_alert_lists_exactly_the_orders_of_its_window(case):
    data, trigger, written, alerts = case
    velocity, device, big = alerts
    write(data / "fraud_alerts.db", alerts)
    write_archive(data, written)
    far = data / "archive" / "orders" / "dt=2026-01-01" / "hour=05"
    far.mkdir()
    (far / "part-corrupt-0-0").write_bytes(b"not parquet")  # outside every window: never opened

    r = record(data, velocity.alert_id)
    assert r["archive"] == "available"
    want = brute(written, "user_id", "u_v", T - VELOCITY_MS, T)
    assert len(want) == 71  # the 70 and the trigger; the order exactly 5 min old is out
    got = r["orders"]
    assert got["total"] == 71 and len(got["items"]) == web_orders.MAX_ORDERS
    assert [o["transaction_id"] for o in got["items"]] == want[: web_orders.MAX_ORDERS]
    assert (got["key"], got["value"], got["after"], got["until"]) == ("user_id", "u_v", T - VELOCITY_MS, T)
    o = r["order"]  # as archived: every contract field and the producer's extra ones
    assert (o["transaction_id"], o["restaurant_id"], o["payment_method"], o["city"]) == (
        "t_trigger",
        "r_9",
        "CARD",
        "Pune",
    )
    assert (o["order_id"], o["device_type"], o["event_time"]) == ("o-77", "ios", T)

    r = record(data, device.alert_id)
    t2 = device.event_time
    want = brute(written, "device_id", "d_v", t2 - DEVICE_MS, t2)
    assert r["orders"]["total"] == len(want) and {"u_o", "u_v"} <= {o["user_id"] for o in r["orders"]["items"]}
    assert [o["transaction_id"] for o in r["orders"]["items"]] == want[: web_orders.MAX_ORDERS]

    r = record(data, big.alert_id)
    assert [o["transaction_id"] for o in r["orders"]["items"]] == ["t_trigger"] and r["orders"]["total"] == 1


def test_orders_still_in_progress_are_not_read_and_the_record_says_so(case):
    data, trigger, written, alerts = case
    write(data / "fraud_alerts.db", alerts)
    write_archive(data, written, hidden=True)  # before the checkpoint: hidden in-progress files
    r = record(data, alerts[0].alert_id)
    assert r["archive"] == web_orders.NOT_YET
    assert r["orders"]["items"] == [] and r["orders"]["total"] == 0
    assert r["order"]["transaction_id"] == "t_trigger" and "restaurant_id" not in r["order"]  # the store's summary

    hour = data / "archive" / "orders" / "dt=2026-01-01" / "hour=01"
    (hour / "part-broken-0-0").write_bytes(b"PAR1 half a file")
    r = record(data, alerts[0].alert_id)  # a corrupt committed file: a reason, not a 500
    assert r["archive"].startswith("cannot read part-broken-0-0:") and r["orders"]["total"] == 0


def test_without_an_archive_the_record_says_why(case):
    data, _, _, alerts = case
    write(data / "fraud_alerts.db", alerts)
    r = record(data, alerts[0].alert_id, **{"archive.enabled": False})
    assert r["archive"] == "archive off" and r["orders"]["items"] == [] and r["order"]["user_id"] == "u_v"
    assert record(data, alerts[0].alert_id)["archive"] == "no archive"
