"""A fresh store of each kind per test (`store_flags`: SQLite, then PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fraudstream.config import Settings, load_settings
from fraudstream.store import AlertStore


@pytest.fixture
def settings(store_flags: dict[str, str]) -> Settings:
    return load_settings(flags=store_flags)


@pytest.fixture
def store(settings: Settings) -> Iterator[AlertStore]:
    s = AlertStore.open(settings)
    yield s
    s.close()
