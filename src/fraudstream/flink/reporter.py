"""The job's metrics for Prometheus: Flink's Prometheus reporter, bound to `metrics.host`.

Flink's own `PrometheusReporter` listens on every interface (it binds
`InetSocketAddress(port)`, with no host option), against the rule that the job listens on
loopback only. Ours (jvm/src: LoopbackPrometheusReporter) keeps Flink's conversion of metrics
to Prometheus series and binds the configured host.

Where Flink finds it: a standalone cluster loads reporters as plugins from
$FLINK_PLUGINS_DIR, but the local mini-cluster that PyFlink starts is built without a plugin
manager (LocalExecutor's MiniClusterConfiguration has none), so it finds reporter factories
only through `ServiceLoader` on the thread's context class loader (the one PyFlink adds
`pipeline.jars` to). So the reporter comes in there, and only there: the flink-metrics-prometheus
jar from the PyFlink package's `plugins/`, our classes, and a small jar with the service file
naming our factory (written to the data directory). Not through `pipeline.classpaths`: the
Table API (which the job's sinks once used) merged that list into its own configuration again,
tasks then saw different class paths, and Flink refused to run them ("a different set of
library BLOBs").
"""

from __future__ import annotations

import io
import logging
import os
import time
import zipfile
from pathlib import Path

import pyflink
from pyflink.common import Configuration

from fraudstream.config import Settings
from fraudstream.jars import jars_dir

logger = logging.getLogger(__name__)

NAME = "fraudstream"  # metrics.reporter.<NAME>.*
FACTORY = "io.fraudstream.flink.LoopbackPrometheusReporter$Factory"
_SERVICE = "META-INF/services/org.apache.flink.metrics.reporter.MetricReporterFactory"


def flink_prometheus_jar() -> Path:
    """The flink-metrics-prometheus plugin that the PyFlink package carries."""
    folder = Path(pyflink.__file__).resolve().parent / "plugins" / "metrics-prometheus"
    found = sorted(folder.glob("flink-metrics-prometheus-*.jar"))
    if not found:
        raise FileNotFoundError(f"no flink-metrics-prometheus jar in {folder}")
    return found[0]


def configure(conf: Configuration, settings: Settings) -> None:
    """The reporter's keys and class path in the job's configuration (set before the job's
    environment is created: the mini-cluster reads them when it starts). Nothing when metrics
    are off; one warning, and no job metrics, when a jar is missing."""
    m = settings.metrics
    if not m.enabled:
        return
    helper = jars_dir(settings.broker.jars_dir) / "flink" / "fraudstream-flink.jar"
    job_id = conf.get_string("$internal.pipeline.job-id", "")  # set by checkpoints.configure
    try:
        prometheus = flink_prometheus_jar()
        if not helper.is_file():
            raise FileNotFoundError(f"{helper} not found (run 'make jars')")
    except FileNotFoundError as exc:
        if job_id:  # said once, by `endpoint`, which would otherwise wait for the reporter in vain
            _write_if_changed(status_file(settings, job_id), f"error {exc}\n".encode())
        else:
            logger.warning("the job's metrics are not exposed: %s", exc)
        return
    service = settings.data_dir.resolve() / "flink-reporter" / "fraudstream-reporter-service.jar"
    _write_if_changed(service, _service_jar())
    prefix = f"metrics.reporter.{NAME}."
    conf.set_string(prefix + "factory.class", FACTORY)
    conf.set_string(prefix + "host", m.host)
    conf.set_string(prefix + "port", m.job_port)
    if job_id:
        conf.set_string(prefix + "status-file", str(status_file(settings, job_id)))
    from pyflink.util.java_utils import add_jars_to_context_class_loader

    add_jars_to_context_class_loader([j.as_uri() for j in (helper, prometheus, service)])


def _service_jar() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as jar:
        # a fixed date: the same bytes every time, so a second run rewrites nothing
        stamp = (2026, 1, 1, 0, 0, 0)
        jar.writestr(zipfile.ZipInfo("META-INF/MANIFEST.MF", stamp), "Manifest-Version: 1.0\n")
        jar.writestr(zipfile.ZipInfo(_SERVICE, stamp), FACTORY + "\n")
    return buffer.getvalue()


def _write_if_changed(path: Path, data: bytes) -> None:
    """Written atomically: runs may share a data directory."""
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def status_file(settings: Settings, job_id: str) -> Path:
    """Where the job's reporter writes its outcome: `port <n>` or `error <why>` (one line)."""
    return settings.data_dir.resolve() / "flink-reporter" / f"{job_id}.status"


def endpoint(settings: Settings, job_id: str, timeout_s: float = 10.0) -> str | None:
    """The URL of this job's metrics (`http://host:port/metrics`), read from what its reporter
    wrote (the port of `metrics.job_port` it got), waiting up to `timeout_s` for it. None when
    metrics are off, or, after one warning line saying why, when the reporter failed or said
    nothing (the details are in <data-dir>/flink-logs).

    A file rather than probing the ports: the reporter is the one that knows, a probe would
    have to tell this job's series from another run's on the next port, and a reporter that
    failed (every port taken, the plugin missing) says why there and only there."""
    m = settings.metrics
    if not m.enabled:
        return None
    path = status_file(settings, job_id)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            line = path.read_text().strip()
            break
        except FileNotFoundError:
            if time.monotonic() >= deadline:
                logger.warning(
                    "the job's metrics: its reporter said nothing within %.0f s (see %s)",
                    timeout_s,
                    settings.data_dir / "flink-logs",
                )
                return None
            time.sleep(0.1)
    kind, _, rest = line.partition(" ")
    if kind == "port" and rest.isdigit():
        host = f"[{m.host}]" if ":" in m.host else m.host
        return f"http://{host}:{rest}/metrics"
    logger.warning("the job's metrics are not exposed: %s", rest if kind == "error" else line)
    return None
