"""What a submission to a Flink cluster (`cluster.jobmanager`) ships, and the checks before it.

The cluster's TaskManagers run our Python code (the detectors, the alert text, the sinks'
records) but have none of it installed: the job carries it, the way Flink intends, not
through a filesystem they happen to share with this machine.

- `pipeline.jars`: the jars the job's classes come from (the flink-python jar of this
  client's PyFlink, which the cluster's lib/ lacks; the Kafka connector and our own classes;
  the archive's and ONNX Runtime's jars where used), uploaded with the job graph;
- `python.files`: one directory per code version under <data_dir>/cluster/ship/, holding the
  `fraudstream` package and the third-party packages the workers import that apache-flink's
  own installation does not bring (pydantic and its dependencies, orjson, confluent-kafka);
- `python.executable`: the workers' Python with apache-flink installed (`cluster.python`; unset:
  this interpreter, right on this machine). `python.pythonpath` only when `cluster.python_path`
  is given: Flink puts it first on the workers' PYTHONPATH, before python.files, so this
  interpreter's site-packages there made the workers import pydantic & co. from the client's
  installation instead of the shipped directory (seen in a worker's /proc/<pid>/environ).
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pyflink
from packaging.markers import default_environment
from packaging.requirements import Requirement
from pyflink.common import Configuration

import fraudstream
from fraudstream.config import Settings
from fraudstream.errors import UserFacingError
from fraudstream.jars import jars_dir

logger = logging.getLogger(__name__)

# The distributions the workers' modules import beyond the standard library and pyflink
# (fraudstream.config: pydantic; records: orjson; fraudstream.flink.sinks -> kafka.clients:
# confluent-kafka). Their dependencies come along (`worker_distributions`); a unit test
# imports the workers' modules with nothing else importable (tests/cluster/test_shipping.py).
WORKER_ROOTS = ("pydantic", "orjson", "confluent-kafka")
# The Flink version the job is built against (the client's PyFlink); a cluster must match it.
FLINK_MINOR = ".".join(pyflink.version.__version__.split(".")[:2])


class ClusterError(UserFacingError):
    """No usable Flink cluster at `cluster.jobmanager`: unreachable, another version, too few slots."""


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: tuple[str, ...] | list[str]) -> set[str]:
    """The installed distributions `roots` need (themselves included), by their metadata's
    requirements whose markers hold here, extras left out."""
    env = default_environment()
    seen: set[str] = set()
    todo = [_normal(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # not installed: nothing of it can be imported either
        seen.add(name)
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({**env, "extra": ""}):
                todo.append(_normal(req.name))
    return seen


def worker_distributions() -> list[str]:
    """The distributions to ship: what the workers import, less apache-flink's own closure
    (which any Python that runs PyFlink workers has installed)."""
    return sorted(closure(WORKER_ROOTS) - closure(["apache-flink"]))


def _distribution_files(name: str) -> list[tuple[Path, str]]:
    """(installed file, path inside the ship dir) of one distribution's importable files."""
    dist = metadata.distribution(name)
    out = []
    for f in dist.files or []:
        parts = Path(str(f)).parts
        if not parts or parts[0] == ".." or parts[0].endswith((".dist-info", ".egg-info")) or "__pycache__" in parts:
            continue
        if parts[0] in ("bin", "share") or str(f).endswith(".pth"):
            continue
        out.append((Path(str(dist.locate_file(f))), str(f)))
    return out


def _package_files() -> list[tuple[Path, str]]:
    root = Path(fraudstream.__file__).resolve().parent
    return [
        (p, str(Path("fraudstream") / p.relative_to(root)))
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    ]


def ship_dir(settings: Settings) -> Path:
    """The directory shipped as `python.files`, prepared once per code version (a hash of the
    package's files and the shipped distributions' versions) and reused after."""
    files = _package_files()
    dists = worker_distributions()
    digest = hashlib.sha256()
    for path, rel in files:
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    for name in dists:
        digest.update(f"{name}=={metadata.version(name)}\0".encode())
    target = settings.data_dir.resolve() / "cluster" / "ship" / digest.hexdigest()[:16]
    if (target / "fraudstream" / "__init__.py").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".ship-", dir=target.parent))
    try:
        for name in dists:
            files += _distribution_files(name)
        for src, rel in files:
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
        shipped = {
            "distributions": {d: metadata.version(d) for d in dists},
            # for `flink run` (fraudstream.flink.entry), whose client imports this copy: where the jars are
            "jars_dir": str(jars_dir(settings.broker.jars_dir)),
        }
        (tmp / "SHIPPED.json").write_text(json.dumps(shipped))
        try:
            os.rename(tmp, target)
        except OSError:  # another run prepared it meanwhile
            if not (target / "fraudstream" / "__init__.py").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("prepared %s for the cluster (%d distributions shipped)", target, len(dists))
    return target


def shipped_jars_dir() -> Path | None:
    """The jars directory recorded in the ship dir this `fraudstream` package was imported from, if any."""
    try:
        data = json.loads((Path(fraudstream.__file__).resolve().parents[1] / "SHIPPED.json").read_text())
    except (OSError, ValueError):
        return None
    return Path(data["jars_dir"]) if isinstance(data, dict) and data.get("jars_dir") else None


def flink_python_jar() -> Path:
    """The flink-python jar of this client's PyFlink (`flink run -py` adds it by itself)."""
    found = sorted((Path(pyflink.__file__).resolve().parent / "opt").glob("flink-python-*.jar"))
    if not found:
        raise ClusterError(f"no flink-python jar in {Path(pyflink.__file__).parent / 'opt'}: reinstall apache-flink")
    return found[0]


def workers_python(settings: Settings) -> tuple[str, str | None]:
    """(python.executable, python.pythonpath or None = unset) for the workers.

    The executable finds its own site-packages (apache-flink's closure) by itself in process
    mode, and python.pythonpath would go before the shipped directory: set only when asked."""
    c = settings.cluster
    return c.python or sys.executable, c.python_path or None


def configure(conf: Configuration, settings: Settings) -> None:
    """The keys of a submission to `cluster.jobmanager` (the jars are set by the caller)."""
    host, port = split(settings.cluster.jobmanager or "")
    executable, pythonpath = workers_python(settings)
    entries = {
        "execution.target": "remote",
        "rest.address": host,
        "rest.port": str(port),
        "python.files": str(ship_dir(settings)),
        "python.executable": executable,
    }
    if pythonpath is not None:
        entries["python.pythonpath"] = pythonpath
    for key, value in entries.items():
        conf.set_string(key, value)


def split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def web_url(address: str) -> str:
    return f"http://{address}"


def overview(address: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """The cluster's /overview, or a ClusterError saying in one line why there is none."""
    url = f"{web_url(address)}/overview"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            data = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ClusterError(
            f"{address} answers, but not as a Flink JobManager (HTTP {exc.code} for /overview)"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ClusterError(
            f"no Flink cluster at {address} ({reason}): start one with 'fraudstream cluster start', "
            "or give cluster.jobmanager / --jobmanager the REST address (HOST:PORT) of yours"
        ) from None
    except ValueError:
        raise ClusterError(f"{address} answers, but not as a Flink JobManager (/overview is not JSON)") from None
    if not isinstance(data, dict) or "slots-available" not in data:
        raise ClusterError(f"{address} answers, but not as a Flink JobManager (no slots in /overview)")
    return data


def slots_needed(settings: Settings, readers: int) -> int:
    """Task slots the job takes: every step shares one slot group, so the widest step's parallelism."""
    p = settings.pipeline
    return max([readers, p.parallelism, *p.step_parallelism.values()])


def check_cluster(settings: Settings, readers: int) -> dict[str, Any]:
    """Refuse, in one line, a cluster that cannot run this job (see `refusal`); its /overview if it can."""
    info = overview(settings.cluster.jobmanager or "")
    why = refusal(info, settings, readers)
    if why is not None:
        raise ClusterError(why)
    return info


def refusal(info: dict[str, Any], settings: Settings, readers: int, slots: bool = True) -> str | None:
    """Why a cluster with this /overview cannot run the job: another Flink version, or (`slots`)
    fewer free slots than the job's widest step; None if it can."""
    address = settings.cluster.jobmanager or "the cluster"
    version = str(info.get("flink-version", "?"))
    if not version.startswith(FLINK_MINOR + "."):
        return (
            f"the cluster at {address} runs Flink {version}; this job is built for Flink {FLINK_MINOR} "
            f"(apache-flink {pyflink_version()}): use a {FLINK_MINOR} cluster"
        )
    need = slots_needed(settings, readers)
    free = int(info.get("slots-available", 0))
    if slots and free < need:
        return (
            f"the cluster at {address} has {free} free task slots ({info.get('slots-total', free)} in all); "
            f"this job needs {need} (its widest step: pipeline.parallelism, step_parallelism, or one source "
            "reader per raw-topic partition): add TaskManagers, wait for running jobs, or lower the parallelism"
        )
    return None


def pyflink_version() -> str:
    try:
        return metadata.version("apache-flink")
    except metadata.PackageNotFoundError:
        return "?"


def remote_environment(conf: Configuration) -> Any:
    """A StreamExecutionEnvironment that submits to the cluster named in `conf`.

    PyFlink's `get_execution_environment(conf)` builds a local one whatever the target says
    (Java's getExecutionEnvironment does); the plain constructor honours `execution.target`."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.java_gateway import get_gateway

    j_env_class = get_gateway().jvm.org.apache.flink.streaming.api.environment.StreamExecutionEnvironment
    return StreamExecutionEnvironment(j_env_class(conf._j_configuration))
