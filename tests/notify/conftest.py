from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fraudstream.detectors.base import Alert
from fraudstream.store import AlertStore
from tests.notify.servers import Smtp, Webhook, make_cert

SMTP_USER = "alerts@fraud.example"
SMTP_PASSWORD = "pw-SECRET-42:&?"

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def make_alert(n: int, severity: str = "CRITICAL", device: str = "d_8", user: str | None = None, **kw) -> Alert:
    alert_type = kw.pop("alert_type", "DEVICE_SHARING_FRAUD" if severity == "CRITICAL" else "HIGH_VALUE_FRAUD")
    user = user or f"u_{n}"
    return Alert(
        alert_id=kw.pop("alert_id", f"a{n:05d}"), alert_type=alert_type, severity=severity,
        key=device if alert_type == "DEVICE_SHARING_FRAUD" else user, user_id=user, device_id=device,
        transaction_id=f"t{n}", amount=kw.pop("amount", 1850.5), event_time=BASE_MS + n * 1000,
        message=kw.pop("message", f"Device {device} used by 3 users in 30 minutes"),
        details=kw.pop("details", {"distinct_users": 3}), detected_at=BASE_MS + n * 1000 + 5, **kw,
    )  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlertStore]:
    s = AlertStore(tmp_path / "fraud_alerts.db")
    yield s
    s.close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.stop()


@pytest.fixture(scope="session")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def smtp(cert: tuple[Path, Path]) -> Iterator[Smtp]:
    server = Smtp(*cert, SMTP_USER, SMTP_PASSWORD)
    yield server
    server.stop()
