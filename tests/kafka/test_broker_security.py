"""The local broker listens on loopback only and keeps its passwords to its owner."""

from __future__ import annotations

import stat

import pytest

from fraudstream.config import BrokerSettings
from fraudstream.kafka.broker import LocalBroker
from tests.sockets import not_loopback

# Too slow for `make check` (under a minute, no Flink): the session broker's start; `make test` runs it.
pytestmark = pytest.mark.slow


def test_the_broker_listens_on_loopback_only(broker):
    pid = broker.pid()
    assert pid is not None
    assert not_loopback([pid]) == {}


def test_the_brokers_settings_file_is_its_owners_alone(tmp_path):
    """server.properties holds every broker password: 0600, also over an older 0644 file."""
    local = LocalBroker(BrokerSettings(sasl_users={"fraud": "s3cret"}), tmp_path)
    local.root.mkdir(parents=True)
    local.properties.write_text("old\n")
    local.properties.chmod(0o644)
    local._write_config()
    assert "s3cret" in local.properties.read_text()
    assert stat.S_IMODE(local.properties.stat().st_mode) == 0o600
