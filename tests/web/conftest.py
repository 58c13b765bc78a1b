"""A store filled through the store's own writer, settings pointing at it, and the app."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from fraudstream.config import Settings, load_settings
from fraudstream.detectors import DeviceSharingDetector, HighValueDetector, VelocityDetector
from fraudstream.detectors.base import Alert
from fraudstream.store import AlertStore
from tests.conftest import BASE, MIN, make_order

with warnings.catch_warnings():  # starlette's note that it would rather use httpx2
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

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


def write(path: Path, alerts: list[Alert]) -> None:
    store = AlertStore(path)
    try:
        store.write_batch(alerts)
    finally:
        store.close()


def settings_for(data_dir: Path, **overrides: object) -> Settings:
    return load_settings(None, {"data_dir": data_dir, **overrides})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = settings_for(tmp_path, **{"dashboard.push_interval_ms": 100})
    write(s.db_path, sample())
    return s


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    from fraudstream.web import create_app

    with TestClient(create_app(settings), base_url="http://127.0.0.1:8050") as c:
        assert c.get("/").status_code == 200  # the page sets the CSRF cookie
        yield c


def csrf(c: TestClient) -> dict[str, str]:
    return {"X-CSRF-Token": c.cookies.get("fraudstream_csrf") or "", "Origin": "http://127.0.0.1:8050"}
