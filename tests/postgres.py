"""A real PostgreSQL server for the tests (Debian's package; never a mock): one per test
session, started on a free port in a folder of its own, stopped at the end.

`postgres_server` is the server; `postgres_url` a fresh, empty store of it for one test (a
schema of its own, named in the URL), so tests never see each other's rows.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from fraudstream.store.server import LocalPostgres


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    # Under /tmp, not pytest's tmp_path: as root the server runs as the postgres user, who
    # cannot traverse root's private folders.
    root = Path(tempfile.mkdtemp(prefix="fraudstream-pg-", dir="/tmp"))
    os.chmod(root, 0o755)
    server = LocalPostgres(root / "pg", _free_port(), durable=False)  # no fsync: tests, not data
    server.start()
    yield server
    pid = server.pid()
    server.stop()
    shutil.rmtree(root, ignore_errors=True)
    if pid is not None:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.fixture(scope="session")
def postgres_database(postgres_server: LocalPostgres) -> str:
    """The URL of one database of the session's server, shared by the tests (each in its own schema)."""
    return postgres_server.create_database("tests")


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """The URL of a store of this test alone (store.url): a new, empty schema, named in the URL's
    search_path (a schema costs milliseconds, a database a few hundred)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE SCHEMA {}").format(psycopg.sql.Identifier(schema)))
    return f"{postgres_database}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_flags(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """Settings overrides for a fresh store of each kind: the same test runs on SQLite and on
    PostgreSQL (`load_settings(flags={**store_flags, ...})`)."""
    if request.param == "sqlite":
        return {"store.db_path": str(tmp_path / "fraud_alerts.db")}
    return {"store.url": request.getfixturevalue("postgres_url"), "store.db_path": str(tmp_path / "unused.db")}
