"""One copier per store, enforced.

Two copiers on one database (two runs started within the same seconds, two data directories
sharing one store, two team members' `store follow` on one PostgreSQL database) would copy
the same records and could move each other's offsets back.

- SQLite: an exclusive `flock` on `<database>.copier.lock`, next to the database as its path
  resolves (a symlinked store from another data directory is the same store).
- PostgreSQL: a session advisory lock (`pg_try_advisory_lock`) on a connection of its own,
  held open while the copier lives; the copiers may run on different machines, so no file
  could do. Its `application_name` carries the holder's host and PID, for the message.

Why these, and not a row in the database: both are dropped by the kernel or the server when
their holder ends, however it ends (SIGKILL, a lost machine: its connection closes), so a dead
copier's lock never blocks the next run, and no pid/start-time guessing is needed. Should a
PostgreSQL connection be lost while its copier goes on, the batches' offset check
(`AlertStore.write_batch`, OffsetConflict) still refuses a second writer.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
from pathlib import Path

from fraudstream.errors import UserFacingError
from fraudstream.store import db
from fraudstream.store.db import Location

logger = logging.getLogger(__name__)

# The advisory lock's keys: ("copi" in ASCII, the store's schema hashed), since advisory locks
# are per database and two stores may be two schemas of one database (search_path).
_COPIER_LOCK = 0x636F7069
_KEYS = "?, hashtext(current_schema())"


class CopierBusy(UserFacingError):
    """Another copier holds the store."""


class CopierLock:
    """The copier's lock on a store: a SQLite file's path, or a Location (either database)."""

    def __init__(self, where: Path | Location) -> None:
        loc = where if isinstance(where, Location) else Location("sqlite", path=Path(where))
        self.location = loc
        self._fd: int | None = None
        self._conn: db.Connection | None = None
        if loc.dialect == "sqlite":
            assert loc.path is not None
            resolved = loc.path.resolve()
            self.db_path: Path | None = resolved
            self.path: Path | None = resolved.with_name(resolved.name + ".copier.lock")
        else:
            self.db_path = self.path = None

    def acquire(self) -> None:
        """Take the lock, or raise `CopierBusy` at once (never wait: a second run should say so)."""
        if self.location.dialect == "postgresql":
            self._acquire_advisory()
        else:
            self._acquire_file()

    def _acquire_file(self) -> None:
        if self._fd is not None:
            return
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise CopierBusy(
                f"another copier (PID {holder}) is copying into {self.db_path}: one run per store; "
                "stop it first, or give this run another store (--data-dir or store.db_path)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        logger.debug("holding %s", self.path)

    def _acquire_advisory(self) -> None:
        if self._conn is not None:
            return
        conn = db.connect(self.location)
        try:
            me = f"fraudstream copier, PID {os.getpid()} on {socket.gethostname()}"
            conn.execute("SELECT set_config('application_name', ?, false)", (me[:63],))
            if not conn.execute(f"SELECT pg_try_advisory_lock({_KEYS})", (_COPIER_LOCK,)).fetchone()[0]:
                raise CopierBusy(
                    f"another copier ({self.holder(conn) or 'unknown'}) is copying into {self.location}: one copier per "
                    "store; stop it first, or give this run another database (store.url)"
                )
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        logger.debug("holding the copier's advisory lock on %s", self.location)

    @staticmethod
    def holder(conn: db.Connection) -> str | None:
        """Who holds a PostgreSQL store's copier lock (its session's application name, or its
        backend's PID), or None. Reads only (`store status`)."""
        row = conn.execute(
            "SELECT a.application_name, a.client_addr, l.pid FROM pg_locks l"
            " LEFT JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND l.objsubid = 2 AND l.classid = ?::oid AND l.objid = hashtext(current_schema())::oid",
            (_COPIER_LOCK,),
        ).fetchone()
        if row is None:
            return None
        name, addr, pid = row
        if name and name.startswith("fraudstream copier, "):
            return name.removeprefix("fraudstream copier, ")
        return f"PostgreSQL backend {pid}" + (f" from {addr}" if addr else "")

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()  # closing the session releases its advisory locks
            except db.ERRORS:
                logger.debug("closing the lock's connection failed", exc_info=True)
            self._conn = None
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
