"""A single-node Apache Kafka broker (KRaft mode) run from the jars that `make jars` fetched.

It is for laptops and tests, where there is no Docker: `start` formats the storage once,
launches the JVM detached (its own session, so Ctrl-C in a terminal does not reach it),
waits until the broker answers, and records the PID; `stop` ends that PID only.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from fraudstream.config import BrokerSettings, KafkaSettings
from fraudstream.errors import UserFacingError
from fraudstream.jars import kafka_classpath
from fraudstream.kafka.clients import KafkaUnavailable, connect_admin

logger = logging.getLogger(__name__)

_LOG4J = """\
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = {log_dir}/server.log
appender.file.filePattern = {log_dir}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
"""


class BrokerError(UserFacingError):
    """The broker could not be started or stopped; one line for the user."""


@dataclass(frozen=True)
class BrokerStatus:
    pid: int | None
    ready: bool
    bootstrap: str

    @property
    def running(self) -> bool:
        return self.pid is not None


class LocalBroker:
    def __init__(self, cfg: BrokerSettings, data_dir: Path) -> None:
        self.cfg = cfg
        self.root = (data_dir / "kafka").resolve()
        self.storage = self.root / "kraft-data"
        self.log_dir = self.root / "logs"
        self.properties = self.root / "server.properties"
        self.pid_file = self.root / "broker.pid"
        self._child: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    def kafka_settings(self, base: KafkaSettings | None = None) -> KafkaSettings:
        """Client settings pointing at this broker (logged in as its first user, if it has users)."""
        base = base or KafkaSettings()
        update: dict[str, object] = {"bootstrap_servers": self.bootstrap, "security_protocol": "PLAINTEXT"}
        if self.cfg.sasl_users:
            user, password = next(iter(self.cfg.sasl_users.items()))
            update.update(
                security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username=user, sasl_password=password
            )
        return base.model_copy(update=update)

    # ----------------------------------------------------------------- status
    def pid(self) -> int | None:
        """PID of our running broker, or None (a stale PID file is ignored)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _is_our_broker(pid, self.properties) else None

    def status(self, timeout_s: float = 3.0) -> BrokerStatus:
        pid = self.pid()
        ready = False
        if pid is not None:
            try:
                connect_admin(self.kafka_settings(), timeout_s=timeout_s)
                ready = True
            except KafkaUnavailable:
                ready = False
        return BrokerStatus(pid, ready, self.bootstrap)

    # ------------------------------------------------------------------ start
    def start(self) -> BrokerStatus:
        """Start the broker unless ours is already running; return once it answers."""
        if self.pid() is not None:
            return self.status(timeout_s=self.cfg.start_timeout_s)
        for port in (self.cfg.port, self.cfg.controller_port):
            if _port_open(self.cfg.host, port):
                raise BrokerError(
                    f"port {port} on {self.cfg.host} is already in use by another program: "
                    "stop it, or choose other ports with --set broker.port=... --set broker.controller_port=..."
                )
        classpath = kafka_classpath(self.cfg.jars_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        if not (self.storage / "meta.properties").exists():
            self._format(classpath)
        cmd = [
            "java",
            f"-Xms{self.cfg.heap}",
            f"-Xmx{self.cfg.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.log_dir}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(self.properties),
        ]
        try:
            with open(self.log_dir / "broker.out", "ab") as out:
                self._child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        except FileNotFoundError:
            raise BrokerError("'java' not found: install a Java 17+ runtime (make setup does)") from None
        self.pid_file.write_text(f"{self._child.pid}\n")
        logger.info("broker starting: pid %d, %s", self._child.pid, self.bootstrap)
        deadline = time.monotonic() + self.cfg.start_timeout_s
        while time.monotonic() < deadline:
            if self._child.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(f"the broker exited at start-up: {self._last_error()}")
            try:
                connect_admin(self.kafka_settings(), timeout_s=1.0)
                return BrokerStatus(self._child.pid, True, self.bootstrap)
            except KafkaUnavailable:
                time.sleep(0.3)
        self.stop()
        raise BrokerError(f"the broker did not answer within {self.cfg.start_timeout_s:g}s; see {self.log_dir}")

    def _write_config(self) -> None:
        c = self.cfg
        client = "SASL_PLAINTEXT" if c.sasl_users else "PLAINTEXT"
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{c.host}:{c.controller_port}",
            "listeners": f"{client}://{c.host}:{c.port},CONTROLLER://{c.host}:{c.controller_port}",
            "advertised.listeners": f"{client}://{c.host}:{c.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": client,
            "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,{client}:{client}",
            "log.dirs": str(self.storage),
            "num.partitions": "1",
            # Topics are created on purpose ('fraudstream kafka topics'), so a typo is an error.
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "168",
        }
        if c.sasl_users:
            user, password = next(iter(c.sasl_users.items()))
            accounts = " ".join(f'user_{u}="{p}"' for u, p in c.sasl_users.items())
            lines["sasl.enabled.mechanisms"] = "PLAIN"
            lines["sasl.mechanism.inter.broker.protocol"] = "PLAIN"
            lines["listener.name.sasl_plaintext.plain.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="{user}" password="{password}" {accounts};'
            )
        # It holds every broker password: readable by its owner only, also if it was there before.
        _write_private(self.properties, "".join(f"{k}={v}\n" for k, v in lines.items()))
        (self.root / "log4j2.properties").write_text(_LOG4J.format(log_dir=self.log_dir))

    def _format(self, classpath: str) -> None:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        try:
            result = subprocess.run(
                [
                    "java",
                    "-cp",
                    classpath,
                    "kafka.tools.StorageTool",
                    "format",
                    # one argument: an id may begin with "-", which would read as an option
                    f"--cluster-id={cluster_id}",
                    "-c",
                    str(self.properties),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
        except FileNotFoundError:
            raise BrokerError("'java' not found: install a Java 17+ runtime (make setup does)") from None
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            errors = [line.strip() for line in lines if "rror" in line or "xception" in line]
            reason = (errors or lines or [f"exit status {result.returncode}"])[0]
            raise BrokerError(f"formatting the broker storage failed: {reason[:300]}")
        logger.info("formatted %s (cluster %s)", self.storage, cluster_id)

    def _last_error(self) -> str:
        try:
            lines = (self.log_dir / "broker.out").read_text(errors="replace").splitlines()
            lines += (self.log_dir / "server.log").read_text(errors="replace").splitlines()
        except OSError:
            return f"see {self.log_dir}"
        for line in reversed(lines):
            if "ERROR" in line or "Exception" in line:
                return line.strip()[:300]
        return f"see {self.log_dir}"

    # ------------------------------------------------------------------- stop
    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop our broker (SIGTERM, then SIGKILL after `timeout_s`); False if none ran."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        if not self._wait_gone(pid, timeout_s):
            logger.warning("broker %d ignored SIGTERM for %.0fs; killing it", pid, timeout_s)
            os.kill(pid, signal.SIGKILL)
            self._wait_gone(pid, 10)
        self.pid_file.unlink(missing_ok=True)
        return True

    def _wait_gone(self, pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._child is not None and self._child.pid == pid:
                if self._child.poll() is not None:
                    return True
            else:
                _reap(pid)
                if not _is_our_broker(pid, self.properties):
                    return True
            time.sleep(0.1)
        return False


def _is_our_broker(pid: int, properties: Path) -> bool:
    """True when `pid` is alive (not a zombie) and is a Kafka broker run with our properties."""
    proc = Path(f"/proc/{pid}")
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if stat[stat.rindex(")") + 2 :].startswith("Z"):
        return False
    return b"kafka.Kafka" in cmdline and str(properties).encode() in cmdline


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600, whatever the umask or an older file's mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(text)


def _reap(pid: int) -> None:
    """Collect the exit status if the broker is our child (no-op otherwise)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0
