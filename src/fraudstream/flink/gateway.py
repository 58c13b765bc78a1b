"""Start and stop the JVM that PyFlink starts for this process, and reap it.

PyFlink launches its Java gateway as a child process but keeps no handle to it; the JVM
exits on its own some seconds after its parent, by which time nobody is left to reap it.
Stopping it ourselves, by PID, leaves no process (or zombie) behind. The JVM logs to a
file only (`LOG4J_PROPERTIES`), never to the console the alerts are printed on.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# The JVM's log4j2 configuration: everything to the Flink log file, nothing to the console.
LOG4J_PROPERTIES = Path(__file__).with_name("log4j2.properties")
# The gateway JVM's class-data-sharing archive (AppCDS): the classes a run loads (Flink's
# runtime, the mini-cluster's, PyFlink's), already parsed and verified, mapped at start-up
# instead of read from the jars. Made once by `make setup` (a short run with RECORD_CLASSES set); it belongs to
# this environment's PyFlink jars and Java, and a JVM that finds it stale ignores it.
CLASS_ARCHIVE = Path(sys.prefix) / "share" / "fraudstream" / "gateway-classes.jsa"
# Set (to anything) for a run that records the archive when its JVM exits.
RECORD_CLASSES = "RECORD_FLINK_CLASSES"  # not FRAUDSTREAM_*: those are settings


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


def _gateway_children() -> list[int]:
    """Flink gateway JVMs that are children of this process (for gateways not started by
    `start_gateway`); other Java children, such as a Kafka broker, are left alone."""
    me = os.getpid()
    found = []
    for p in processes():
        if p.ppid != me or p.comm != "java":
            continue
        try:
            cmdline = Path(f"/proc/{p.pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"PythonGatewayServer" in cmdline:
            found.append(p.pid)
    return found


# The gateway JVM started by `start_gateway`, by PID (PyFlink itself keeps no handle).
_gateway_pid: int | None = None


def start_gateway(jvm_options: Sequence[str] = ()) -> None:
    """Start PyFlink's gateway JVM (if not yet running) so that it ignores SIGTERM as well as
    SIGINT, and remember its PID. `jvm_options` (pipeline.jvm_options) go to that JVM, which
    is also the local mini-cluster's, before any in the environment's JVM_ARGS.

    A stop signal sent to the whole process group (`timeout`, `kill -- -PGID`, a service
    manager) then reaches only this process, which stops the job, flushes what it received
    and ends the JVM itself, instead of losing the JVM mid-flight. Only the JVM ignores the
    signal (set in the child before exec, where an ignored shutdown signal stays ignored by
    HotSpot); this process keeps its own handlers throughout. `stop_gateway` uses SIGHUP.

    The JVM logs with `LOG4J_PROPERTIES` (to $FLINK_LOG_DIR, not the console) unless the
    environment names another file in LOG4J_PROPERTIES, the variable PyFlink reads.
    """
    import pyflink.pyflink_gateway_server as server
    from pyflink.java_gateway import get_gateway

    original = server.Popen

    def popen(*args: Any, preexec_fn: Callable[[], None] | None = None, **kwargs: Any) -> subprocess.Popen:
        def preexec() -> None:
            if preexec_fn is not None:
                preexec_fn()
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

        proc = original(*args, preexec_fn=preexec, **kwargs)
        global _gateway_pid
        _gateway_pid = proc.pid
        return proc

    server.Popen = popen
    # The JVM logs with ours unless the environment names another file.
    log4j = {} if "LOG4J_PROPERTIES" in os.environ else {"LOG4J_PROPERTIES": str(LOG4J_PROPERTIES)}
    extra = [*jvm_options, *class_archive_flags()]
    jvm_args = {"JVM_ARGS": " ".join([*extra, *os.environ.get("JVM_ARGS", "").split()])} if extra else {}
    try:
        with environ_set(log4j | jvm_args):
            get_gateway()
    finally:
        server.Popen = original


@contextmanager
def environ_set(values: dict[str, str]) -> Iterator[None]:
    """`values` in os.environ for the block (read by PyFlink as it starts things), as before after."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def class_archive_flags(archive: Path = CLASS_ARCHIVE) -> list[str]:
    """The gateway JVM's class-sharing flags: record the archive (RECORD_CLASSES set), use it
    (it exists), or none. Its messages stay off the console: a stale archive (another Java,
    other jars) is ignored without a word, at the cost of the seconds it saves."""
    if os.environ.get(RECORD_CLASSES):
        archive.parent.mkdir(parents=True, exist_ok=True)
        return [f"-XX:ArchiveClassesAtExit={_recording(archive)}", "-Xlog:cds*=off"]
    if archive.is_file():
        return [f"-XX:SharedArchiveFile={archive}", "-Xlog:cds*=off"]
    return []


def _recording(archive: Path) -> Path:
    """Where this process's JVM writes the archive before it is moved into place."""
    return archive.with_name(f"{archive.name}.{os.getpid()}.tmp")


def _keep_recorded(archive: Path = CLASS_ARCHIVE) -> None:
    """Move a recorded archive into place (one rename: a JVM never maps a half-written one)."""
    recorded = _recording(archive)
    if recorded.is_file() and recorded.stat().st_size > 0:
        recorded.replace(archive)
        logger.info("class archive recorded: %s (%.0f MB)", archive, archive.stat().st_size / 2**20)
    else:
        recorded.unlink(missing_ok=True)
        logger.warning("no class archive was recorded (the JVM did not exit cleanly)")


def stop_gateway(timeout_s: float = 15.0) -> None:
    """Terminate and reap this process's Flink gateway JVM (a no-op where there is none)."""
    global _gateway_pid
    recording = bool(os.environ.get(RECORD_CLASSES)) and (_gateway_pid is not None)
    if recording:
        timeout_s = max(timeout_s, 180.0)  # the JVM writes the class archive as it exits
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
    pids = [_gateway_pid] if _gateway_pid is not None else _gateway_children()
    _gateway_pid = None
    for pid in pids:
        try:
            # SIGHUP, not SIGTERM: the JVM ignores SIGTERM (see start_gateway); both run its
            # shutdown hooks, which clean up the mini-cluster's temporary files.
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            time.sleep(0.1)
        else:
            logger.warning("Flink gateway %d did not stop in %.0fs; killing it", pid, timeout_s)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    if recording:
        _keep_recorded()
