"""Checkpoints, savepoints and restarts: the Flink settings that make a run resumable.

A run checkpoints its state (detector windows, cooldowns, event-time buffers) and its
Kafka positions every `checkpoint.interval_ms` into `checkpoint.dir`, keeps the newest
`checkpoint.retained` of them when it is cancelled or killed, and restarts itself with
exponential backoff when a task fails. `run --resume` starts from the newest completed
checkpoint found there; `run --from-savepoint PATH` from a savepoint (or any checkpoint).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from pyflink.common import Configuration

from fraudstream.config import Settings
from fraudstream.errors import UserFacingError

logger = logging.getLogger(__name__)


class NothingToResume(UserFacingError):
    """`--resume` found no completed checkpoint."""


def configure(conf: Configuration, settings: Settings, restore_from: str | None = None) -> None:
    c = settings.checkpoint
    entries = {
        "execution.checkpointing.interval": f"{c.interval_ms} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.timeout": f"{c.timeout_ms} ms",
        "execution.checkpointing.dir": settings.checkpoint_uri,
        "execution.checkpointing.savepoint-dir": settings.savepoint_uri,
        "execution.checkpointing.num-retained": str(c.retained),
        # Kept when the job is cancelled (Ctrl-C) so that --resume can continue from it.
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "state.backend.type": "hashmap",
        "restart-strategy.type": "exponential-delay",
        "restart-strategy.exponential-delay.initial-backoff": f"{c.restart_initial_backoff_ms} ms",
        "restart-strategy.exponential-delay.max-backoff": f"{c.restart_max_backoff_ms} ms",
        "restart-strategy.exponential-delay.backoff-multiplier": "2.0",
        "restart-strategy.exponential-delay.jitter-factor": "0.1",
        "restart-strategy.exponential-delay.attempts-before-reset-backoff": str(c.restart_attempts),
        # REST serves metrics at most this old (Flink's default, 10 s, is too coarse for
        # `fraudstream bench`, which samples the source's record count).
        "metrics.fetcher.update-interval": "500 ms",
        # Reaching the job from `fraudstream savepoint`.
        "rest.bind-address": "127.0.0.1",
        "rest.address": "127.0.0.1",
        "rest.bind-port": str(settings.pipeline.rest_port),
        "rest.port": str(settings.pipeline.rest_port),
    }
    if restore_from is not None:
        entries["execution.state-recovery.path"] = restore_from
    for key, value in entries.items():
        conf.set_string(key, value)


def local_dir(uri: str) -> Path | None:
    """The directory behind a file:// URI, or None for remote filesystems."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    return Path(unquote(parsed.path))


def latest_checkpoint(settings: Settings) -> Path:
    """The newest completed checkpoint (a `chk-N` folder with its `_metadata`) of any earlier run."""
    root = local_dir(settings.checkpoint_uri)
    if root is None:
        raise NothingToResume(
            f"--resume looks for checkpoints in local directories only; {settings.checkpoint_uri} is remote: "
            "pass the checkpoint's path to --from-savepoint instead"
        )
    found = [m.parent for m in root.glob("*/chk-*/_metadata")] if root.is_dir() else []
    if not found:
        raise NothingToResume(
            f"no completed checkpoint under {root} to resume from: run without --resume to start fresh"
        )
    # By when the metadata was written, not the folder's time: Flink deletes a subsumed
    # checkpoint's files before its metadata, and a run killed in between leaves an old
    # folder, touched last, whose metadata points at files that are gone.
    return max(found, key=lambda p: ((p / "_metadata").stat().st_mtime, int(p.name.removeprefix("chk-"))))


def check_restore_path(path: str) -> str:
    """A savepoint or checkpoint given by the user: a readable answer if it is not one."""
    if "://" in path and not path.startswith("file://"):
        return path  # remote: Flink will tell
    local = local_dir(path) if path.startswith("file://") else Path(path).expanduser().resolve()
    assert local is not None
    if not (local / "_metadata").is_file():
        raise UserFacingError(f"{local} is not a savepoint or checkpoint (it has no _metadata file)")
    return str(local)


def rest_port(client: Any, configured: int) -> int:
    """The port the local mini-cluster's REST endpoint got (it may be any free one).

    PyFlink does not expose the mini-cluster; its job client holds it in a private field.
    """
    try:
        j_client = client._j_job_client
        field = j_client.getClass().getDeclaredField("miniCluster")
        field.setAccessible(True)
        uri = field.get(j_client).getRestAddress().get()
        return int(uri.getPort())
    except Exception:
        logger.debug("could not read the REST port from the job client", exc_info=True)
        return configured


def new_failures(rest_port: int, job_id: str, seen: set[int]) -> list[str]:
    """Failures the job recovered from (or is recovering from) since the last call, one line each."""
    import json
    import urllib.request

    url = f"http://127.0.0.1:{rest_port}/jobs/{job_id}/exceptions?maxExceptions=10"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            history = json.loads(response.read()).get("exceptionHistory", {}).get("entries", [])
    except Exception:
        return []
    lines = []
    for entry in history:
        stamp = entry.get("timestamp")
        if stamp in seen:
            continue
        seen.add(stamp)
        trace = (entry.get("stacktrace") or "").strip().splitlines()
        causes = [t.removeprefix("Caused by: ") for t in trace if t.startswith("Caused by: ")]
        lines.append((causes[-1] if causes else trace[0] if trace else entry.get("exceptionName", "?"))[:300])
    return lines
