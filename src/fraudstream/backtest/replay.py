"""Replay an archived period through the same Flink job, bounded, with given settings.

The period's orders are taken from the raw-event archive (the records exactly as received),
put in event-time order into one JSON-lines file, and run through `fraudstream run --source
file:...` in a child process with its own data directory, store and configuration file: the
very job that runs in production, engine and all, with nothing shared with a live run. The
archive is not written again by a replay.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fraudstream.config import ENV_PREFIX, Settings, to_toml
from fraudstream.errors import UserFacingError

logger = logging.getLogger(__name__)


class NothingToReplay(UserFacingError):
    """The archive has no orders in the period asked for."""


# The store settings a private run sets itself: the environment's (which beats a settings
# file) must not point it at the user's store, above all not at a team's PostgreSQL store.
_STORE_ENV = ("store__url", "store__db_path")


def private_store_environ() -> dict[str, str]:
    """This process's environment for a child `fraudstream run` that keeps a SQLite store of
    its own (a replay, a benchmark): without FRAUDSTREAM_STORE__URL and __DB_PATH."""
    return {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith(ENV_PREFIX) and k[len(ENV_PREFIX) :].lower() in _STORE_ENV)
    }


@dataclass(frozen=True)
class BacktestRun:
    name: str
    settings: Settings  # as the run used them (its own data directory and store)
    seconds: float


def archived_period(archive: Path, start_ms: int | None, end_ms: int | None, out: Path) -> int:
    """Write the archived orders with start_ms <= event_time < end_ms to `out`, one record
    as received per line, in event-time order; returns how many."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from fraudstream.evaluation.labels import open_order_archive

    if not archive.is_dir():
        raise NothingToReplay(f"no archive at {archive}: run the job with the archive on (archive.enabled) first")
    folder, dataset = open_order_archive(archive)
    where = None
    for bound, op in ((start_ms, pc.greater_equal), (end_ms, pc.less)):
        if bound is not None:
            term = op(ds.field("event_time"), bound)
            where = term if where is None else where & term
    table = dataset.to_table(columns=["event_time", "transaction_id", "raw"], filter=where)
    if table.num_rows == 0:
        raise NothingToReplay(f"the archive at {folder} has no orders in the period asked for")
    table = table.sort_by([("event_time", "ascending"), ("transaction_id", "ascending")])
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for raw in table.column("raw").to_pylist():
            fh.write(raw.replace("\n", " ") + "\n")
    return table.num_rows


def newest_event_time(archive: Path) -> int | None:
    """The event time (ms) of the archive's newest order, from the event_time column alone;
    None when there is no archive or it holds no orders."""
    import pyarrow.compute as pc

    from fraudstream.evaluation.errors import EvaluationInputError
    from fraudstream.evaluation.labels import open_order_archive

    if not archive.is_dir():
        return None
    try:
        _, dataset = open_order_archive(archive)
        column = dataset.to_table(columns=["event_time"]).column("event_time")
    except (EvaluationInputError, OSError, ValueError, KeyError):
        return None
    newest = pc.max(column).as_py() if len(column) else None
    return None if newest is None else int(newest)


def without_secrets(settings: Settings) -> Settings:
    """The settings with no password: a replay reads a file into SQLite and logs in nowhere,
    and its settings file stays behind in the work folder."""
    return settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"sasl_password": None}),
            "broker": settings.broker.model_copy(update={"sasl_users": {}}),
        }
    )


def run_replay(
    name: str,
    settings: Settings,
    events: Path,
    workdir: Path,
    echo: Callable[[str], None],
) -> BacktestRun:
    """Run the job over `events` with `settings`, into `workdir/name` (store, logs, config)."""
    data_dir = workdir / name
    data_dir.mkdir(parents=True, exist_ok=True)
    run_settings = settings.with_overrides(
        {
            "data_dir": str(data_dir),
            "pipeline.source": f"file:{events}",
            "pipeline.verbose": False,
            "archive.enabled": False,
            "store.db_path": str(data_dir / "fraud_alerts.db"),
            "logging.log_file": str(data_dir / "app.log"),
        }
    )
    # Unset, checkpoints and savepoints go under the replay's own data directory, and the store
    # is the SQLite file there, never the team's PostgreSQL store of store.url (with_overrides
    # skips None values, hence the copy).
    run_settings = run_settings.model_copy(
        update={
            "checkpoint": run_settings.checkpoint.model_copy(update={"dir": None, "savepoint_dir": None}),
            "store": run_settings.store.model_copy(update={"url": None}),
        }
    )
    config = data_dir / "settings.toml"
    config.write_text(to_toml(without_secrets(run_settings).model_dump(mode="json")), encoding="utf-8")
    command = [sys.executable, "-m", "fraudstream", "--config", str(config), "run"]
    log_path = data_dir / "run.log"
    echo(f"{name}: replaying through the Flink job ({run_settings.pipeline.engine} engine), log in {log_path}")
    started = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=private_store_environ()
        )
        try:
            code = proc.wait()
        except BaseException:  # Ctrl-C or SIGTERM: stop the replay too, cleanly
            proc.send_signal(signal.SIGTERM)
            proc.wait()
            raise
    seconds = time.monotonic() - started
    if code != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise UserFacingError(f"the {name} replay failed (exit {code}): {tail[0]} (see {log_path})")
    echo(f"{name}: done in {seconds:.0f}s")
    return BacktestRun(name, run_settings, seconds)
