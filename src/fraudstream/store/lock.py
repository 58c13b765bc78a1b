"""One copier per store, enforced.

Two copiers on one database (two runs started within the same seconds, or two data
directories sharing one store) would copy the same records and could move each other's
offsets back. The lock is an exclusive `flock` on `<database>.copier.lock`, next to the
database as its path resolves (a symlinked store from another data directory is the same
store), held as long as the copier lives. Why flock, and not a row in the database: the
kernel drops it when its process ends, however it ends (SIGKILL included), so a dead
copier's lock never blocks the next run, and no pid/start-time guessing is needed; the
lock file's text (the holder's PID) is only for the message.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from fraudstream.errors import UserFacingError

logger = logging.getLogger(__name__)


class CopierBusy(UserFacingError):
    """Another copier holds the store."""


class CopierLock:
    def __init__(self, db_path: Path) -> None:
        resolved = db_path.resolve()
        self.db_path = resolved
        self.path = resolved.with_name(resolved.name + ".copier.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise `CopierBusy` at once (never wait: a second run should say so)."""
        if self._fd is not None:
            return
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

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
