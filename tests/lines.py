"""Reading a child process's output line by line while the test goes on, without losing any.

(Iterating `proc.stdout` and then calling `communicate()` loses the lines the iterator had
already buffered: `communicate` reads the pipe, not the buffer.)"""

from __future__ import annotations

import subprocess
import threading
import time


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
