"""A local standalone Flink cluster (a JobManager and TaskManagers) run from the Flink
distribution inside the PyFlink package, so that the job can be run, rescaled and broken on
one machine exactly as on a real cluster.

Each JVM is started with Flink's own `jobmanager.sh` / `taskmanager.sh start-foreground`
(the scripts exec java, so the child's PID is the JVM's), in its own session (Ctrl-C in a
terminal does not reach it, and its Python workers share its process group), with a
configuration directory of ours. The PIDs and their start times are recorded in
<dir>/cluster.json, and only those processes are ever signalled: Flink's `stop-cluster.sh`
stops only as many TaskManagers as `workers` has lines.

The TaskManagers are launched right after the JobManager's JVM, not once its REST endpoint
answers: each spends seconds in Flink's scripts and its own start-up before it looks for the
JobManager, and one that is early retries after 1 s (cluster.registration.error-delay, set
here; Flink's default of 10 s is what made a TaskManager started beside the JobManager slow).
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil
import yaml

from fraudstream.config import Settings
from fraudstream.errors import UserFacingError
from fraudstream.sockets import answers, free_port, loopback

logger = logging.getLogger(__name__)

# A killed TaskManager is declared lost after this long without a heartbeat (Flink's default
# is 50 s): a crashed TaskManager's tasks are then restarted elsewhere within seconds. One
# whose process is gone is declared lost sooner, after two heartbeats it refused
# (heartbeat.rpc-failure-threshold), so the interval decides how soon.
HEARTBEAT_INTERVAL = "2 s"
HEARTBEAT_TIMEOUT = "10 s"
# Flink's Prometheus reporter binds every interface; the project's own (jvm/src:
# LoopbackPrometheusReporter) binds metrics.host. It is loaded as a plugin from a folder that
# also holds Flink's flink-metrics-prometheus jar, whose classes it reuses.
REPORTER_FACTORY = "io.fraudstream.flink.LoopbackPrometheusReporter$Factory"
_NAMES = {"jobmanager": "JobManager", "taskmanager": "TaskManager"}
_IDENT = "fraudstream"  # FLINK_IDENT_STRING: Flink's pid and log files are named after it


class ClusterError(UserFacingError):
    """The local cluster could not be started, reached or stopped; one line for the user."""


@dataclass(frozen=True)
class JobSummary:
    id: str
    name: str
    state: str


@dataclass(frozen=True)
class ClusterStatus:
    """What `cluster status` shows. REST figures are 0 (and `rest_ok` False) when the
    JobManager runs but does not answer (yet)."""

    jobmanager_pid: int
    taskmanager_pids: tuple[int, ...]
    rest_address: str
    web_url: str
    rest_ok: bool
    taskmanagers: int  # registered with the JobManager
    slots_total: int
    slots_available: int
    jobs: tuple[JobSummary, ...] = ()
    log_dir: Path | None = None
    reporter: str | None = None  # why the Prometheus reporter is off, when it is off
    metrics: dict[int, str] = field(default_factory=dict)  # pid -> its /metrics URL, once known

    @property
    def ready(self) -> bool:
        """REST answers and every TaskManager we started is registered."""
        return self.rest_ok and self.taskmanagers >= len(self.taskmanager_pids) > 0


@dataclass
class _Proc:
    """One JVM we started: its PID, its start time (PIDs are reused) and its Flink log."""

    pid: int
    started: float
    log: str = ""
    metrics_file: str = ""  # where its Prometheus reporter says its port


@dataclass
class _Record:
    jobmanager: _Proc | None = None
    taskmanagers: list[_Proc] = field(default_factory=list)
    reporter: str | None = None
    rest: str = ""  # host:port of its REST endpoint

    def all(self) -> list[_Proc]:
        return ([self.jobmanager] if self.jobmanager else []) + self.taskmanagers


class LocalCluster:
    """The local standalone cluster of these settings: its files live in cluster.dir
    (default <data_dir>/cluster): conf/, log/, pid/ (Flink's), plugins/ and cluster.json."""

    def __init__(self, settings: Settings, heartbeat_interval: str = HEARTBEAT_INTERVAL) -> None:
        """`heartbeat_interval` (Flink's duration syntax) is for tests, which kill TaskManagers
        and wait for the loss to be noticed; it is written into the conf at `start`."""
        self.settings = settings
        self.heartbeat_interval = heartbeat_interval
        self.cfg = settings.cluster
        self.root = Path(self.cfg.dir or settings.data_dir / "cluster").resolve()
        self.record_file = self.root / "cluster.json"
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._consoles: dict[int, tuple[Path, int]] = {}  # pid -> its script's output, from where

    # ------------------------------------------------------------- addresses
    @property
    def rest_address(self) -> str:
        """Where the running cluster's REST endpoint is (as it was started, whatever the
        settings say now), or where it would be."""
        record = self._read()
        if record.rest and record.jobmanager and self._handle(record.jobmanager) is not None:
            return record.rest
        return self._configured_rest()

    def _configured_rest(self) -> str:
        host = loopback(self.cfg.host)
        return f"[{host}]:{self.cfg.rest_port}" if ":" in host else f"{host}:{self.cfg.rest_port}"

    @property
    def web_url(self) -> str:
        return f"http://{self.rest_address}"

    @property
    def conf_dir(self) -> Path:
        return self.root / "conf"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    # ---------------------------------------------------------------- status
    def status(self) -> ClusterStatus | None:
        """The cluster's state, or None when its JobManager is not running."""
        record = self._live_record()
        if record.jobmanager is None:
            return None
        return self._status(record)

    def taskmanager_pids(self) -> list[int]:
        """PIDs of our live TaskManagers, oldest first."""
        return [p.pid for p in self._live_record().taskmanagers]

    def _status(self, record: _Record, timeout_s: float = 2.0) -> ClusterStatus:
        assert record.jobmanager is not None
        overview = self._get("/overview", timeout_s)
        jobs = self._get("/jobs/overview", timeout_s) if overview is not None else None
        summaries = tuple(
            JobSummary(j.get("jid", ""), j.get("name", ""), j.get("state", "")) for j in (jobs or {}).get("jobs", [])
        )
        o = overview or {}
        return ClusterStatus(
            jobmanager_pid=record.jobmanager.pid,
            taskmanager_pids=tuple(p.pid for p in record.taskmanagers),
            rest_address=self.rest_address,
            web_url=self.web_url,
            rest_ok=overview is not None,
            taskmanagers=int(o.get("taskmanagers", 0)),
            slots_total=int(o.get("slots-total", 0)),
            slots_available=int(o.get("slots-available", 0)),
            jobs=summaries,
            log_dir=self.log_dir,
            reporter=record.reporter,
            metrics={p.pid: url for p in record.all() if (url := self._metrics_url(p))},
        )

    def _metrics_url(self, p: _Proc) -> str | None:
        try:
            kind, _, port = Path(p.metrics_file).read_text().strip().partition(" ") if p.metrics_file else ("", "", "")
        except OSError:
            return None
        if kind != "port" or not port.isdigit():
            return None
        host = loopback(self.settings.metrics.host)
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"

    # ----------------------------------------------------------------- start
    def start(self, progress: Callable[[str], None] | None = None) -> ClusterStatus:
        """Start the JobManager and cluster.taskmanagers TaskManagers, and return once all are
        registered (within cluster.start_timeout_s); if ours already runs, only its status.
        On failure, timeout or Ctrl-C, whatever was started is stopped again, and a ClusterError
        says where the logs are. `progress` receives a line at each step."""
        say = progress or (lambda line: None)
        deadline = time.monotonic() + self.cfg.start_timeout_s
        began = time.monotonic()
        # The lock is held until the JobManager is recorded (a second or two in Flink's
        # script): a second start meanwhile waits, then finds it, instead of starting another
        # JobManager that one of the two would lose track of.
        with self._locked():
            record = self._live_record()
            if record.jobmanager is not None:
                return self._status(record)
            if record.taskmanagers:  # left over from a JobManager that died
                logger.warning("stopping TaskManagers %s, whose JobManager has ended", record.all())
            self._stop_locked(record, 30)  # and the Python workers of any that ended by themselves
            if answers(self.cfg.host, self.cfg.rest_port):
                raise ClusterError(
                    f"port {self.cfg.rest_port} on {self.cfg.host} is already in use by another program: "
                    "stop it, or choose another port with --set cluster.rest_port=N"
                )
            reporter = self._write_conf()
            record = _Record(reporter=reporter, rest=self._configured_rest())
            self._save(record)
            try:
                child = self._launch("jobmanager")
                # Recorded at once (the PID and start time stay the same when the script execs
                # java): a start killed before the JVM is up leaves nothing `stop` cannot find.
                record.jobmanager = self._provisional(child)
                self._save(record)
                record.jobmanager = self._await_exec(child, "jobmanager")
            except BaseException:
                self._stop_locked(record, 30)
                raise
            self._save(record)
        jm = record.jobmanager
        try:
            say(f"JobManager starting (pid {jm.pid}), and {self.cfg.taskmanagers} TaskManager(s) beside it")
            # Not after the REST endpoint answers: see the module's docstring.
            children = []
            for _ in range(self.cfg.taskmanagers):
                children.append(self._launch("taskmanager"))
                self._record_taskmanager(self._provisional(children[-1]))
            for child in children:
                self._record_taskmanager(self._await_exec(child, "taskmanager"))
            self._await(
                lambda: self._get("/overview", 1.0) is not None,
                deadline,
                "answered on its REST endpoint",
                self.cfg.start_timeout_s,
            )
            say(f"Web UI up at {self.web_url} after {time.monotonic() - began:.1f}s; waiting for the TaskManagers")
            total = self.cfg.taskmanagers * self.cfg.slots
            self._wait_slots(total, deadline, self.cfg.start_timeout_s)
            say(
                f"{self.cfg.taskmanagers} TaskManager(s) registered, {total} slots, after {time.monotonic() - began:.1f}s"
            )
        except BaseException:
            self.stop()
            raise
        status = self.status()
        if status is None:  # it ended just now
            raise ClusterError(f"the cluster ended right after starting; see {self.log_dir}")
        return status

    def add_taskmanager(self) -> int:
        """Start one more TaskManager (cluster.slots slots) and record it; its PID. It registers
        within seconds: `wait_for_slots` waits for that."""
        with self._locked():
            if self._live_record().jobmanager is None:
                raise ClusterError("the local cluster is not running; start it with 'fraudstream cluster start'")
        child = self._launch("taskmanager")
        self._record_taskmanager(self._provisional(child))
        proc = self._await_exec(child, "taskmanager")
        self._record_taskmanager(proc)
        logger.info("TaskManager started: pid %d", proc.pid)
        return proc.pid

    def _provisional(self, child: subprocess.Popen[bytes]) -> _Proc:
        """A record entry for a JVM still in Flink's script: its PID and start time (its log
        follows once it has exec'd java)."""
        try:
            return _Proc(child.pid, psutil.Process(child.pid).create_time())
        except psutil.Error:
            return _Proc(child.pid, time.time())

    def _record_taskmanager(self, proc: _Proc) -> None:
        """Record a TaskManager, or complete its provisional entry."""
        with self._locked():
            record = self._pruned()
            record.taskmanagers = [p for p in record.taskmanagers if p.pid != proc.pid] + [proc]
            self._save(record)

    def wait_for_slots(self, total: int, timeout_s: float) -> None:
        """Wait until the JobManager counts exactly `total` slots (a lost TaskManager's are
        no longer counted once its heartbeat times out); ClusterError when not within `timeout_s`,
        or as soon as a TaskManager we started has died."""
        self._wait_slots(total, time.monotonic() + timeout_s, timeout_s)

    def _wait_slots(self, total: int, deadline: float, timeout_s: float) -> None:
        expected = set(self.taskmanager_pids())

        def done() -> bool:
            gone = expected - set(self.taskmanager_pids())
            if gone:
                raise ClusterError(f"TaskManager {min(gone)} exited; see {self._log_of(min(gone))}")
            o = self._get("/overview", 1.0)
            return o is not None and int(o.get("slots-total", -1)) == total

        self._await(done, deadline, f"registered {total} task slots", timeout_s)

    def _await(self, check: Callable[[], bool], deadline: float, what: str, timeout_s: float) -> None:
        """Poll `check` until it holds; ClusterError at `deadline` or when the JobManager ends."""
        while True:
            if self._live_record().jobmanager is None:
                raise ClusterError(f"the JobManager has exited: {self._last_error()}")
            if check():
                return
            if time.monotonic() >= deadline:
                raise ClusterError(
                    f"the local cluster had not {what} within {timeout_s:g}s; see the logs in {self.log_dir}"
                )
            time.sleep(0.2)

    def _launch(self, role: str) -> subprocess.Popen[bytes]:
        """`<role>.sh start-foreground` in its own session, its console output in the log dir."""
        home = flink_home()
        env = dict(os.environ)
        env.update(
            FLINK_HOME=str(home),
            FLINK_CONF_DIR=str(self.conf_dir),
            FLINK_LOG_DIR=str(self.log_dir),
            FLINK_PID_DIR=str(self.root / "pid"),
            FLINK_PLUGINS_DIR=str(self.root / "plugins"),
            FLINK_IDENT_STRING=_IDENT,
            # stdout and stderr of the JVM in <log>/flink-...-N-host.out/.err, as in daemon mode
            STD_REDIRECT_TO_FILE="true",
            # config.sh names files after $USER, which may be empty (containers, cron)
            USER=os.environ.get("USER") or _user(),
            # a Python started by name (the PyFlink client, a worker without python.executable)
            PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")]),
        )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        script = home / "bin" / f"{role}.sh"
        console = self.log_dir / f"{role}-console.log"
        with open(console, "ab") as out:
            offset = out.tell()  # this launch's lines start here
            try:
                child = subprocess.Popen(
                    ["bash", str(script), "start-foreground", *self._reporter_args(role)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.root,
                    start_new_session=True,
                )
            except FileNotFoundError as exc:
                raise ClusterError(f"cannot run {script}: {exc.strerror}") from None
        self._children[child.pid] = child
        self._consoles[child.pid] = (console, offset)
        return child

    def _reporter_args(self, role: str) -> list[str]:
        """Where this JVM's Prometheus reporter writes the port it got (`port <n>`): a dynamic
        property, as each JVM needs a file of its own."""
        if not (self.conf_dir / "config.yaml").is_file() or self._read().reporter is not None:
            return []
        path = self.root / "reporter" / f"{role}-{uuid.uuid4().hex[:12]}.status"
        return ["-D", f"metrics.reporter.prom.status-file={path}"]

    def _await_exec(self, child: subprocess.Popen[bytes], role: str) -> _Proc:
        """Wait until the script has exec'd java, and return the record entry: PID, start time,
        and the Flink log file. Not at the first command line naming our conf dir: that is
        `bash flink-console.sh` still, before `exec java ... -Dlog.file=<log>`, and a crash's
        ERROR line is in that log."""
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and child.poll() is None:
            with contextlib.suppress(psutil.Error):
                h = psutil.Process(child.pid)
                args = h.cmdline()
                logs = [a.removeprefix("-Dlog.file=") for a in args if a.startswith("-Dlog.file=")]
                if logs and str(self.conf_dir) in " ".join(args):
                    status = [a.partition("status-file=")[2] for a in args if "prom.status-file=" in a]
                    return _Proc(child.pid, h.create_time(), logs[0], status[0] if status else "")
            time.sleep(0.05)
        console, offset = self._consoles[child.pid]
        if child.poll() is None:
            child.kill()
            child.wait()
            raise ClusterError(f"the {_NAMES[role]} script did not start Java within 30s; see {console}")
        self._children.pop(child.pid, None)
        raise ClusterError(f"the {_NAMES[role]} exited at once (exit {child.returncode}): {_reason(console, offset)}")

    def _log_of(self, pid: int) -> str:
        record = self._read()
        for p in record.all():
            if p.pid == pid:
                return p.log
        return str(self.log_dir)

    # ------------------------------------------------------------------ conf
    def _write_conf(self) -> str | None:
        """config.yaml (Flink 2.x), the log4j files, masters/workers and the plugins folder.
        Returns why the Prometheus reporter is off, or None when it is on."""
        home = flink_home()
        s, c = self.settings, self.cfg
        for d in (self.conf_dir, self.log_dir, self.root / "pid", self.root / "reporter"):
            d.mkdir(parents=True, exist_ok=True)
        for old in (self.root / "reporter").glob("*.status"):  # the last run's reporters' ports
            old.unlink()
        for pattern in ("log4j*.properties", "logback*.xml"):
            for src in (home / "conf").glob(pattern):
                (self.conf_dir / src.name).write_bytes(src.read_bytes())
        (self.conf_dir / "masters").write_text(f"{c.host}:{c.rest_port}\n")
        (self.conf_dir / "workers").write_text(f"{c.host}\n")
        packaged = yaml.safe_load((home / "conf" / "config.yaml").read_text()) or {}
        java_opts = packaged.get("env", {}).get("java", {}).get("opts", {}).get("all", "")
        conf: dict[str, Any] = {
            "env.java.opts.all": java_opts,
            "jobmanager.bind-host": c.host,
            "jobmanager.rpc.address": c.host,
            # TaskManagers find the JobManager at this port, so it cannot be 0: a free one now
            "jobmanager.rpc.port": free_port(c.host),
            "jobmanager.memory.process.size": c.jobmanager_memory,
            "jobmanager.execution.failover-strategy": "region",
            "taskmanager.bind-host": c.host,
            "taskmanager.host": c.host,
            "taskmanager.numberOfTaskSlots": c.slots,
            "taskmanager.memory.process.size": c.taskmanager_memory,
            "taskmanager.rpc.port": "0",
            "taskmanager.data.port": 0,
            "blob.server.port": "0",
            "rest.address": loopback(c.host),
            "rest.bind-address": c.host,
            "rest.port": c.rest_port,
            "heartbeat.interval": self.heartbeat_interval,
            "heartbeat.timeout": HEARTBEAT_TIMEOUT,
            "cluster.registration.error-delay": "1 s",
            "parallelism.default": 1,
            "execution.checkpointing.dir": s.checkpoint_uri,
            "execution.checkpointing.savepoint-dir": s.savepoint_uri,
            # the workers' Python, unless a job sets its own
            "python.executable": c.python or sys.executable,
        }
        if c.python_path:
            conf["python.pythonpath"] = c.python_path
        reporter = self._write_plugins()
        if reporter is None:
            m = s.metrics
            conf["metrics.reporter.prom.factory.class"] = REPORTER_FACTORY
            conf["metrics.reporter.prom.host"] = m.host
            conf["metrics.reporter.prom.port"] = m.job_port
        elif s.metrics.enabled:
            logger.warning("the cluster's Prometheus reporter is off: %s", reporter)
        text = "# Written by 'fraudstream cluster start' from the settings; rewritten at every start.\n"
        text += yaml.safe_dump(conf, sort_keys=False, width=10_000)
        (self.conf_dir / "config.yaml").write_text(text)
        return reporter

    def _write_plugins(self) -> str | None:
        """Our plugins folder: only the Prometheus reporter (Flink's jar and ours, with the
        service file naming our factory). None when done; why not, as one line, otherwise.
        The last start's folder goes first, and a new one is made only once every jar is
        there: Flink refuses to start with a plugin folder that holds no jar."""
        plugins = self.root / "plugins"
        folder = plugins / "fraudstream-prometheus"
        try:
            if folder.exists():
                shutil.rmtree(folder)
        except OSError as exc:
            raise ClusterError(f"cannot remove the last start's plugin folder {folder}: {exc.strerror}") from None
        plugins.mkdir(parents=True, exist_ok=True)
        if not self.settings.metrics.enabled:
            return "metrics.enabled is false"
        from fraudstream.flink.reporter import _service_jar, flink_prometheus_jar
        from fraudstream.jars import jars_dir

        helper = jars_dir(self.settings.broker.jars_dir) / "flink" / "fraudstream-flink.jar"
        try:
            prometheus = flink_prometheus_jar()
        except FileNotFoundError as exc:
            return str(exc)
        if not helper.is_file():
            return f"{helper} not found (run 'make jars')"
        folder.mkdir()
        (folder / prometheus.name).symlink_to(prometheus)
        (folder / helper.name).symlink_to(helper)
        (folder / "fraudstream-reporter-service.jar").write_bytes(_service_jar())
        return None

    # ------------------------------------------------------------------ stop
    def stop(self, timeout_s: float = 30) -> bool:
        """SIGTERM every JVM we recorded, SIGKILL those still there after `timeout_s`, then
        any process left in their groups (Python workers); True if something was running."""
        with self._locked():
            return self._stop_locked(self._live_record(), timeout_s)

    def _stop_locked(self, record: _Record, timeout_s: float) -> bool:
        """`stop`, the lock held: `record`'s processes and any we launched but did not record yet."""
        procs = record.all()
        recorded = {p.pid for p in procs}
        orphans = self._kill_ended(recorded)
        for pid, child in list(self._children.items()):  # launched, not yet recorded
            if pid not in recorded and child.poll() is None:
                procs.append(_Proc(pid, 0.0))
        if not procs:
            self.record_file.unlink(missing_ok=True)
            return orphans > 0
        handles = [h for h in (self._handle(p) for p in procs) if h is not None]
        for h in handles:
            with contextlib.suppress(psutil.Error):
                h.terminate()
        alive = self._wait_gone(handles, timeout_s)
        for h in alive:
            logger.warning("pid %d ignored SIGTERM for %.0fs; killing it", h.pid, timeout_s)
            with contextlib.suppress(psutil.Error):
                h.kill()
        self._wait_gone(alive, 10)
        for p in procs:
            self._kill_group(p.pid)
            self._reap(p.pid)
        self.record_file.unlink(missing_ok=True)
        logger.info("cluster stopped: pids %s", [p.pid for p in procs])
        return bool(handles)

    def kill_taskmanager(self, pid: int) -> None:
        """SIGKILL one of our TaskManagers and its Python workers, as a crash would, and forget
        it. The JobManager notices within heartbeat.timeout (10 s)."""
        with self._locked():
            recorded = self._read().taskmanagers
            record = self._pruned()
            mine = [p for p in record.taskmanagers if p.pid == pid]
            if not mine:
                if any(p.pid == pid for p in recorded):  # it has ended by itself (_pruned: its workers too)
                    self._reap(pid)
                    self._save(record)
                    return
                raise ClusterError(f"pid {pid} is not a TaskManager of this cluster")
            h = self._handle(mine[0])
            if h is not None:
                with contextlib.suppress(psutil.Error):
                    h.kill()
                self._wait_gone([h], 10)
            self._kill_group(pid)
            self._reap(pid)
            record.taskmanagers = [p for p in record.taskmanagers if p.pid != pid]
            self._save(record)
        logger.info("TaskManager %d killed", pid)

    def _wait_gone(self, handles: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
        """Those of `handles` still alive after `timeout_s`. A zombie counts as gone: the
        JVMs another process started (`cluster start`, then `cluster stop`) are reaped by it
        or by init, not here; ours are reaped as they end."""
        deadline = time.monotonic() + timeout_s
        alive = list(handles)
        while alive:
            alive = [h for h in alive if _alive(h, self._children.get(h.pid))]
            if not alive or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        return alive

    def _kill_group(self, pgid: int) -> None:
        """SIGKILL what is left of a JVM's process group (its Python workers)."""
        for p in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error, OSError):
                if p.pid != os.getpid() and os.getpgid(p.pid) == pgid:
                    p.kill()

    def _pruned(self) -> _Record:
        """`_live_record`, the lock held and to be saved: the Python workers of the JVMs it
        leaves out (ended by themselves) are killed as they are forgotten. An ended JobManager
        stays recorded (it is not running all the same): its log says why (`_last_error`)."""
        jobmanager = self._read().jobmanager
        record = self._live_record()
        self._kill_ended({p.pid for p in record.all()})
        record.jobmanager = jobmanager
        return record

    def _kill_ended(self, live: set[int]) -> int:
        """`_kill_orphans` for every recorded JVM not in `live`; how many processes it killed."""
        return sum(self._kill_orphans(p) for p in self._read().all() if p.pid not in live)

    def _kill_orphans(self, p: _Proc) -> int:
        """SIGKILL what is left of the process group of a recorded JVM that has ended by itself
        (its Python workers), and how many: only processes of ours, as its PID may be another's
        now. Ours: started after it, with our conf dir in their environment (a worker inherits
        the JVM's) or on their command line."""
        killed = 0
        for proc in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error, OSError):
                if proc.pid == os.getpid() or os.getpgid(proc.pid) != p.pid or not self._ours(proc, p.started):
                    continue
                proc.kill()
                killed += 1
                logger.info("killed pid %d, left over from pid %d, which had ended", proc.pid, p.pid)
        return killed

    def _ours(self, proc: psutil.Process, since: float) -> bool:
        if proc.create_time() < since - 0.05 or proc.status() == psutil.STATUS_ZOMBIE:
            return False
        conf = str(self.conf_dir)
        return proc.environ().get("FLINK_CONF_DIR") == conf or conf in " ".join(proc.cmdline())

    def _reap(self, pid: int) -> None:
        child = self._children.pop(pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(5)

    # ---------------------------------------------------------------- record
    def _handle(self, p: _Proc) -> psutil.Process | None:
        """The live process behind a record entry, or None (ended, or its PID reused)."""
        child = self._children.get(p.pid)
        if child is not None and child.poll() is not None:
            self._children.pop(p.pid, None)
            return None
        try:
            h = psutil.Process(p.pid)
            if child is not None:  # our own child, alive (perhaps still in Flink's script)
                return h
            if abs(h.create_time() - p.started) > 0.05 or h.status() == psutil.STATUS_ZOMBIE:
                return None
            if str(self.conf_dir) not in " ".join(h.cmdline()):
                return None
        except psutil.Error:
            return None
        return h

    def _live_record(self) -> _Record:
        """The record with the processes that have ended (or were never ours) left out."""
        record = self._read()
        if record.jobmanager is not None and self._handle(record.jobmanager) is None:
            record.jobmanager = None
        record.taskmanagers = [p for p in record.taskmanagers if self._handle(p) is not None]
        return record

    def _read(self) -> _Record:
        try:
            data = orjson.loads(self.record_file.read_bytes())
            jm = data.get("jobmanager")
            return _Record(
                jobmanager=_Proc(**jm) if jm else None,
                taskmanagers=[_Proc(**t) for t in data.get("taskmanagers", [])],
                reporter=data.get("reporter"),
                rest=data.get("rest", ""),
            )
        except (OSError, orjson.JSONDecodeError, TypeError, AttributeError):
            return _Record()

    def _save(self, record: _Record) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.record_file.with_name(f".{self.record_file.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(orjson.dumps(asdict(record), option=orjson.OPT_INDENT_2))
        os.replace(tmp, self.record_file)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One `start`, `stop` or record update at a time, across processes."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ REST
    def _get(self, path: str, timeout_s: float) -> Any:
        """JSON from the REST API, or None when it does not answer."""
        try:
            with urllib.request.urlopen(self.web_url + path, timeout=timeout_s) as resp:
                return orjson.loads(resp.read())
        except (OSError, urllib.error.URLError, orjson.JSONDecodeError):
            return None

    def _last_error(self) -> str:
        """Why the JobManager ended, from its logs (the last ERROR of its Flink log and the
        root cause of its stack, else the first exception on its stderr or console), or where
        they are."""
        jm = self._read().jobmanager
        log = Path(jm.log) if jm and jm.log.endswith(".log") else None
        if log is not None:
            with contextlib.suppress(OSError):
                lines = log.read_text(errors="replace").splitlines()
                errors = [i for i, line in enumerate(lines) if " ERROR " in line]
                if errors:
                    error = lines[errors[-1]].partition(" - ")[2].strip() or lines[errors[-1]].strip()
                    causes = [line for line in lines[errors[-1] :] if line.startswith("Caused by: ")]
                    if causes:
                        error += " " + causes[-1].removeprefix("Caused by: ").strip()
                    return f"{error[:400]} (see {log})"
        console = self._consoles.get(jm.pid if jm else -1, (self.log_dir / "jobmanager-console.log", 0))
        for path, offset in ([(log.with_suffix(".err"), 0)] if log else []) + [console]:
            reason = _reason(path, offset)
            if not reason.startswith("see "):
                return reason
        return f"see the logs in {self.log_dir}"


def flink_home() -> Path:
    """The Flink distribution inside the installed PyFlink package (bin/, lib/, conf/, plugins/)."""
    spec = importlib.util.find_spec("pyflink")
    if spec is None or spec.origin is None:
        raise ClusterError("PyFlink is not installed in this Python (pip install apache-flink==2.2.1)")
    home = Path(spec.origin).resolve().parent
    if not (home / "bin" / "jobmanager.sh").is_file():
        raise ClusterError(f"{home} has no bin/jobmanager.sh: this PyFlink package carries no Flink distribution")
    return home


def _alive(h: psutil.Process, child: subprocess.Popen[bytes] | None) -> bool:
    if child is not None:
        return child.poll() is None
    try:
        return h.is_running() and h.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _reason(path: Path, offset: int = 0) -> str:
    """The first error line of a console log from `offset` (a Java exception's message, not
    its stack), else its last line, with where to read more."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
    except OSError:
        lines = []
    errors = [
        line.removeprefix('Exception in thread "main" ')
        for line in lines
        if ("Exception" in line or "Error:" in line or "rror:" in line) and not line.startswith(("at ", "INFO"))
    ]
    best = (errors or lines[-1:] or [""])[0]
    return f"{best[:300]} (see {path})" if best else f"see {path}"


def _user() -> str:
    try:
        return getpass.getuser() or _IDENT
    except (KeyError, OSError):
        return _IDENT
