"""A store filled through the store's own writer, settings pointing at it, and the app; the
`any_*` fixtures the same on a SQLite and on a PostgreSQL store (tests/postgres.py)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from fraudstream.config import Settings, load_settings
from fraudstream.detectors import DeviceSharingDetector, HighValueDetector, VelocityDetector
from fraudstream.detectors.base import Alert
from fraudstream.events.model import Order
from fraudstream.store import AlertStore
from tests.conftest import BASE, MIN, make_order

with warnings.catch_warnings():  # starlette's note that it would rather use httpx2
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

LOCAL = "http://127.0.0.1:8050"  # a Host the dashboard answers (loopback)
HOSTILE = "<img src=x onerror=alert(1)>"


def alert(t: int, user: str = "u_1", device: str = "d_1", kind: str = "velocity", amount: float = 300.0) -> Alert:
    """One alert of a real detector, its event time `t`, detected a second later."""
    order = make_order(t, user=user, device=device, amount=amount)
    if kind == "velocity":
        a = VelocityDetector(threshold=0).make_alert(order, f"User {user} placed 4 orders", {"order_count": 4})
    elif kind == "high_value":
        a = HighValueDetector().make_alert(order, f"User {user} spent {amount}", {"amount": amount})
    else:
        a = DeviceSharingDetector().make_alert(order, f"Device {device} shared", {"users": [user, "u_other"]})
    return replace(a, detected_at=t + 1_000)


def sample() -> list[Alert]:
    """40 alerts over 40 minutes: users u_0..u_4 (u_0 on every 5th), three rules."""
    out = []
    for i in range(40):
        kind = ("velocity", "high_value", "device")[i % 3]
        out.append(alert(BASE + i * MIN, user=f"u_{i % 5}", device=f"d_{i % 4}", kind=kind, amount=100.0 + i))
    out.append(alert(BASE + 41 * MIN, user=HOSTILE, device=HOSTILE, kind="high_value", amount=9999.0))
    return out


def takeover(t: int, user: str = "u_ato", risk: float = 0.97, reasons: list[dict] | None = None) -> Alert:
    """An ACCOUNT_TAKEOVER as `detectors.risk` makes it: a new device and city, 3.5x the usual amount."""
    from fraudstream.detectors.risk import RiskAlerts

    s = load_settings(None, {})
    order = make_order(t, user=user, device="d_new", amount=1400.0)
    found = reasons or [
        {"feature": "device_orders", "value": 0.0, "usual": 14.0, "raised_by": 0.41},
        {"feature": "amount_to_usual", "value": 3.5, "usual": 1.0, "raised_by": 0.22},
        {"feature": "city_orders", "value": 0.0, "usual": 11.0, "raised_by": 0.18},
    ]
    a = RiskAlerts(s.model, s.alerts, model_version="test-1").takeover(order, risk, found)  # type: ignore[arg-type]
    return replace(a, detected_at=t + 1_000)


def scored(a: Alert, risk: float, min_risk: float = 0.02) -> Alert:
    """A rule alert with its order's risk, held back below `min_risk` (as `RiskAlerts.mark`)."""
    return replace(a, risk=risk, held_back=risk < min_risk)


def write(where: Path | Settings, alerts: list[Alert]) -> None:
    """`alerts` into a SQLite file, or into the store of `settings` (PostgreSQL with store.url)."""
    store = AlertStore.open(where) if isinstance(where, Settings) else AlertStore(where)
    try:
        store.write_batch(alerts)
    finally:
        store.close()


def write_archive(data_dir: Path, orders: list[Order], files_per_hour: int = 2, hidden: bool = False) -> list[Path]:
    """`orders` archived as the job does (`flink/archive.py`): Parquet part files with its columns,
    under <data_dir>/archive/orders/dt=YYYY-MM-DD/hour=HH/ by UTC event time. `hidden`: as
    in-progress files (`.part-...inprogress...`), which become visible only at a checkpoint."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fraudstream.flink.archive import ORDER_COLUMNS

    types = {"STRING": pa.string(), "DOUBLE": pa.float64(), "BIGINT": pa.int64()}
    schema = pa.schema([(name, types[kind]) for name, kind in ORDER_COLUMNS])
    by_hour: dict[str, list[dict]] = {}
    for o in orders:
        d = datetime.fromtimestamp(o.event_time / 1000, UTC)
        row = {name: getattr(o, name) for name, _ in ORDER_COLUMNS if name != "raw"}
        row["raw"] = orjson.dumps(o.to_dict()).decode()
        by_hour.setdefault(f"dt={d:%Y-%m-%d}/hour={d:%H}", []).append(row)
    written = []
    for hour, rows in by_hour.items():
        folder = data_dir / "archive" / "orders" / hour
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(files_per_hour):
            name = f".part-test-{i}-0.inprogress.x" if hidden else f"part-test-{i}-0"
            pq.write_table(pa.Table.from_pylist(rows[i::files_per_hour], schema=schema), folder / name)
            written.append(folder / name)
        if not hidden:
            (folder / "_SUCCESS").touch()
    return written


def settings_for(data_dir: Path, **overrides: object) -> Settings:
    return load_settings(None, {"data_dir": data_dir, **overrides})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = settings_for(tmp_path, **{"dashboard.push_interval_ms": 100})
    write(s.db_path, sample())
    return s


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    yield from _client(settings)


@pytest.fixture
def any_settings(tmp_path: Path, store_flags: dict[str, str]) -> Settings:
    """`settings`, once on SQLite and once on PostgreSQL."""
    s = settings_for(tmp_path, **{"dashboard.push_interval_ms": 100, **store_flags})
    write(s, sample())
    return s


@pytest.fixture
def any_client(any_settings: Settings) -> Iterator[TestClient]:
    yield from _client(any_settings)


def _client(settings: Settings) -> Iterator[TestClient]:
    from fraudstream.web import create_app

    with TestClient(create_app(settings), base_url=LOCAL) as c:
        assert c.get("/").status_code == 200  # the page sets the CSRF cookie
        yield c


def csrf(c: TestClient) -> dict[str, str]:
    return {"X-CSRF-Token": c.cookies.get("fraudstream_csrf") or "", "Origin": LOCAL}


@contextlib.contextmanager
def serving(app: object) -> Iterator[str]:
    """`app` served by uvicorn from a thread on a free loopback port (its base URL); stopped after."""
    import socket
    import threading
    import time

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=1)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        assert not thread.is_alive(), "the dashboard did not stop"
