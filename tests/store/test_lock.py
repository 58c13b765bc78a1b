"""One copier per store: the lock is held for the copier's life, refused to a second one
(however the store's path is spelled; on PostgreSQL, from any process), and gone with a process
that died."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from fraudstream.errors import UserFacingError
from fraudstream.store import db
from fraudstream.store.db import Location
from fraudstream.store.lock import CopierBusy, CopierLock


def test_a_second_copier_is_refused_while_the_first_holds_the_store(tmp_path):
    db = tmp_path / "data" / "fraud_alerts.db"
    db.parent.mkdir()
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    (other_dir / "fraud_alerts.db").symlink_to(db)  # a second data directory sharing the store
    first = CopierLock(db)
    first.acquire()
    for path in (db, other_dir / "fraud_alerts.db"):
        with pytest.raises(CopierBusy, match=f"PID {os.getpid()}") as err:
            CopierLock(path).acquire()
        assert isinstance(err.value, UserFacingError)
    first.release()
    again = CopierLock(other_dir / "fraud_alerts.db")
    again.acquire()
    again.release()


def test_the_lock_of_a_killed_copier_does_not_block(tmp_path):
    db = tmp_path / "fraud_alerts.db"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom pathlib import Path\nfrom fraudstream.store.lock import CopierLock\n"
         f"CopierLock(Path({str(db)!r})).acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CopierBusy, match=f"PID {holder.pid}"):
            CopierLock(db).acquire()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
    lock = CopierLock(db)
    lock.acquire()  # the dead process's lock went with it
    lock.release()


def test_two_copiers_on_one_postgresql_store_the_second_refused(postgres_url):
    """The lock of a PostgreSQL store is an advisory lock of a session: the second copier,
    from another process (another machine alike), is refused in one line naming the first;
    the lock ends with its holder's process, however it ends."""
    loc = Location("postgresql", url=postgres_url)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import time\nfrom fraudstream.store.db import Location\nfrom fraudstream.store.lock import CopierLock\n"
         f"lock = CopierLock(Location('postgresql', url={postgres_url!r})); lock.acquire(); print('held', flush=True); "
         "time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CopierBusy, match=f"PID {holder.pid} on ") as err:
            CopierLock(loc).acquire()
        assert "\n" not in str(err.value) and "***" in str(err.value)  # the URL's password masked
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
    deadline = time.monotonic() + 10  # the server ends the dead client's session at once
    while True:
        lock = CopierLock(loc)
        try:
            lock.acquire()
            break
        except CopierBusy:
            assert time.monotonic() < deadline, "the killed copier's lock was never released"
            time.sleep(0.1)
    with pytest.raises(CopierBusy, match=f"PID {os.getpid()} on "):
        CopierLock(loc).acquire()
    lock.release()
    again = CopierLock(loc)
    again.acquire()
    again.release()


def test_two_stores_as_two_schemas_of_one_database_have_a_lock_each(postgres_url):
    """Advisory locks are per database: the copier's is keyed by the store's schema too, so
    two stores in one database (search_path in the URL's options) do not block each other."""
    with db.connect(Location("postgresql", url=postgres_url)) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS team_a")
        conn.execute("CREATE SCHEMA IF NOT EXISTS team_b")
    database = postgres_url.partition("?")[0]  # the test's own schema left out: these two instead
    a, b = (Location("postgresql", url=f"{database}?options=-csearch_path%3D{s}") for s in ("team_a", "team_b"))
    first, other = CopierLock(a), CopierLock(b)
    first.acquire()
    other.acquire()
    with pytest.raises(CopierBusy, match="team_a"):
        CopierLock(a).acquire()
    first.release()
    other.release()
