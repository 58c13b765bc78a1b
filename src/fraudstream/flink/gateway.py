"""Stop the JVM that PyFlink started for this process, and reap it.

PyFlink launches its Java gateway as a child process but keeps no handle to it; the JVM
exits on its own some seconds after its parent, by which time nobody is left to reap it.
Stopping it ourselves, by PID, leaves no process (or zombie) behind.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    state: str
    comm: str


def processes() -> list[Proc]:
    """Every process visible in /proc (empty where there is no /proc)."""
    found = []
    root = Path("/proc")
    for entry in root.iterdir() if root.is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        found.append(Proc(int(entry.name), int(fields[1]), int(fields[2]), fields[0], comm))
    return found


def _java_children() -> list[int]:
    me = os.getpid()
    return [p.pid for p in processes() if p.ppid == me and p.comm == "java"]


def start_gateway() -> None:
    """Start PyFlink's gateway JVM (if not yet running) so that it ignores SIGTERM as well as
    SIGINT: a stop signal sent to the whole process group (`timeout`, `kill -- -PGID`, a
    service manager) then reaches only this process, which stops the job, flushes what it
    received and ends the JVM itself, instead of losing the JVM mid-flight. A JVM started
    with a shutdown signal ignored keeps ignoring it; `stop_gateway` ends it with SIGHUP."""
    from pyflink.java_gateway import get_gateway

    if threading.current_thread() is not threading.main_thread():
        get_gateway()
        return
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        get_gateway()
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_gateway(timeout_s: float = 15.0) -> None:
    """Terminate and reap this process's Flink gateway JVM (a no-op where there is none)."""
    gateway_module = sys.modules.get("pyflink.java_gateway")
    gateway = getattr(gateway_module, "_gateway", None)
    if gateway is not None:
        # Disconnect py4j first, so that nothing in this process talks to a dead JVM later
        # (py4j skips its garbage-collection calls once the client is disconnected).
        try:
            gateway.shutdown()
        except Exception:
            logger.debug("py4j gateway shutdown failed", exc_info=True)
        gateway_module._gateway = None  # type: ignore[union-attr]
    if not Path("/proc").is_dir():
        return
    for pid in _java_children():
        try:
            # SIGHUP, not SIGTERM: the JVM ignores SIGTERM (see start_gateway); both run its
            # shutdown hooks, which clean up the mini-cluster's temporary files.
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        else:
            logger.warning("Flink gateway %d did not stop in %.0fs; killing it", pid, timeout_s)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
