"""Reading a child process's output line by line while the test goes on, without losing any.

(Iterating `proc.stdout` and then calling `communicate()` loses the lines the iterator had
already buffered: `communicate` reads the pipe, not the buffer.)"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class LineReader:
    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            with self._lock:
                self.lines.append(line)

    def count(self, prefix: str) -> int:
        with self._lock:
            return sum(1 for line in self.lines if line.startswith(prefix))

    def wait_for(self, prefix: str, n: int, timeout_s: float, proc: subprocess.Popen) -> bool:
        """True once `n` lines starting with `prefix` were read (False on timeout or exit)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.count(prefix) >= n:
                return True
            if proc.poll() is not None:
                self._thread.join(5)
                return self.count(prefix) >= n
            time.sleep(0.1)
        return False

    def finish(self, timeout_s: float = 30) -> str:
        """Everything read, once the stream has ended."""
        self._thread.join(timeout_s)
        with self._lock:
            return "".join(self.lines)


@contextmanager
def in_own_session(args: list[str], **popen: Any) -> Iterator[tuple[subprocess.Popen, LineReader]]:
    """Run `args` in a session (process group) of its own, its stdout read by a LineReader;
    whatever is still running of the group at the end is killed, so no test leaves it behind."""
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, text=True, start_new_session=True, stdin=subprocess.DEVNULL, **popen
    )
    try:
        yield proc, LineReader(proc.stdout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
