"""Checkpoints, savepoints and restarts: the Flink settings that make a run resumable.

A run checkpoints its state (detector windows, cooldowns, event-time buffers) and its
Kafka positions every `checkpoint.interval_ms` into `checkpoint.dir`, keeps the newest
`checkpoint.retained` of them when it is cancelled or killed, and restarts itself with
exponential backoff when a task fails. `run --resume` continues the last run (see
`resume_point`); `run --from-savepoint PATH` starts from a savepoint (or any checkpoint).

Flink discards a job's checkpoints when it finishes, so "the newest checkpoint on disk" may
belong to an older run that a later one already continued. Each Kafka run therefore leaves
a record, `<checkpoint dir>/runs/<job id>.json` (the job id is fixed here, before the job
exists, or, for a job Flink's own client runs, the one its configuration gives): what it was restored from, where a bounded run stops, whether it made a checkpoint,
and whether it finished. `--resume` follows that lineage, never an older run's state.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from pyflink.common import Configuration

from fraudstream.config import Settings
from fraudstream.errors import UserFacingError
from fraudstream.rules.live import follows_topic

logger = logging.getLogger(__name__)


class NothingToResume(UserFacingError):
    """`--resume` found no completed checkpoint, or the last run left nothing to resume."""


class OlderStateLayout(UserFacingError):
    """The checkpoint or savepoint was written by a version whose state this one cannot read."""


# The layout of the job's state, recorded by every run (RunRecord.state_layout): raised when a
# version changes what its checkpoints hold so that an older one no longer restores (Flink
# then fails every restart with a serializer trace). A record without it is layout 1.
#   2: the SQL engine's order rows carry `appended_at`; the DataStream engine has the
#      `count-dead-letters` step (it moves the generated ids of the steps after it) and
#      keeps `arrived_at` beside its waiting orders.
#   3: the SQL engine's order rows carry the model's `risk` and `reasons` (NULL without a
#      model), in the OVER windows' state, and a `no-model` step or the scoring steps come
#      before them.
#   4: the archive's file writers and committers carry fixed uids (job.fix_archive_ids), so
#      that a savepoint restores at any parallelism (their ids used to change at parallelism 1).
#   5: the SQL part's steps (OVER windows, ConstraintEnforcer, table source) and the Table API's
#      Kafka sinks and table sources carry fixed uids (sql_engine._set_parallelism_between,
#      job.fix_archive_ids), so that a savepoint restores whatever the step_parallelism.
#   6: the SQL engine's rules are keyed Java steps fed by broadcast rule versions (stamp-rules,
#      user-rules, device-rules) instead of OVER windows; candidates carry the version's values.
#   7: the archive and the Kafka sinks are DataStream sinks (sinks.ParquetArchive, KafkaSinks:
#      archive-orders, archive-dead_letters, sink-alerts_out, sink-dead_letters_out) instead of
#      the Table API's, whose steps job.fix_archive_ids named.
#   8: without a model, one user step (sql-user-step: re-deliveries and the user's rules) in place
#      of sql-redelivery and sql-user-rules; an admitted order's id keeps its compared fields only.
#   9: an admitted order's compared fields are packed in one byte array (Admissions.pack), and
#      the user's rules keep one object per user (UserRules.Kept: order times, cities, expiry)
#      in place of rows, maps and lists of boxed values.
STATE_LAYOUT = 9
# What changed after each older layout (the first change a point of that layout misses).
_LAYOUT_CHANGES = {
    1: "before the orders' appended_at field and the count-dead-letters step",
    2: "before the orders' risk and reasons columns",
    3: "before the archive's steps had fixed ids",
    4: "before the SQL part's and the Kafka sinks' steps had fixed ids",
    5: "before the rules were versioned steps instead of SQL OVER windows",
    6: "before the archive and the Kafka sinks left the Table API",
    7: "before the re-delivery check and the user's rules became one step",
    8: "before the admitted orders' fields and the user's rule state were packed in arrays",
}


class OtherSteps(UserFacingError):
    """The checkpoint or savepoint was written by a run with (without) the risk model's steps,
    and this run is without (with) them: Flink cannot map the state onto the other graph."""


def scores(settings: Settings) -> bool:
    """Whether the job scores orders with a model (which adds steps and their state)."""
    return settings.model.path is not None and settings.pipeline.engine == "sql"


class TransactionsExpired(UserFacingError):
    """The checkpoint to resume from is older than the broker keeps its open transactions."""


_records_lock = threading.Lock()


@dataclass
class RunRecord:
    """What a Kafka run leaves beside its checkpoints, for the next `--resume` (see the module)."""

    path: Path
    job_id: str
    started: float
    restored_from: str | None = None
    group_id: str = ""
    raw_topic: str = ""
    bounded_end: dict[int, int] | None = None
    checkpointed: bool = False  # a completed checkpoint of this job was seen
    stopping: bool = False  # `savepoint --stop` was under way
    ended: str | None = None  # "finished": consumed its bounded input, end offsets committed
    job_finished: bool = False  # the driver saw the job finish (noted before the end is committed)
    # The transaction timeout its sinks gave the broker: what decides when the broker aborts
    # the transactions of its checkpoints (not the setting of the run that resumes).
    transaction_timeout_ms: int | None = None
    # STATE_LAYOUT of the version that ran it; records of versions before it have none (layout 1)
    state_layout: int = 1
    # The job scored orders with a model (model.path set): its graph has the scoring steps
    scored: bool = False
    # The job followed the rules topic (fraudstream.rules.live): its graph has the topic's source
    live_rules: bool = False
    # kafka.delivery of its sinks: an exactly-once sink's state (its transactions) does not
    # restore into an at-least-once one, nor the reverse
    delivery: str = "exactly-once"
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self) -> None:
        """Written whole and renamed into place: a kill leaves the old record or the new one.
        (The driver and its watcher thread both update it, hence the lock.)"""
        with _records_lock:
            data = {k: v for k, v in asdict(self).items() if k != "path"}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.path)

    def update(self, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(self, key, value)
        self.save()

    @staticmethod
    def load(path: Path) -> RunRecord | None:
        try:
            data = json.loads(path.read_text())
            if data.get("bounded_end") is not None:
                data["bounded_end"] = {int(p): int(o) for p, o in data["bounded_end"].items()}
            return RunRecord(path=path, **data)
        except (OSError, ValueError, TypeError):
            logger.warning("ignoring an unreadable run record %s", path)
            return None

    def checkpoints(self) -> list[Path]:
        """This job's completed checkpoints still on disk."""
        return [m.parent for m in (self.path.parent.parent / self.job_id).glob("chk-*/_metadata")]


# The run this process configured last (one job per process): `_bounded_run` records in it.
_current: RunRecord | None = None


def current_run() -> RunRecord | None:
    return _current


# Flink's own key for a job's fixed id (PipelineOptionsInternal.PIPELINE_FIXED_JOB_ID).
JOB_ID_KEY = "$internal.pipeline.job-id"


def submitted_by_flink(settings: Settings, local: bool) -> bool:
    """The job is being submitted by Flink's own client (fraudstream.flink.entry: `flink run`, or
    the operator's application mode), which sets `cluster.jobmanager` to None; `fraudstream run
    --jobmanager` keeps it, and the mini-cluster is `local`."""
    return not local and settings.cluster.jobmanager is None


def client_configuration() -> dict[str, str]:
    """The configuration Flink's client gives a job it runs (its context environment's: the
    cluster's flinkConfiguration, and what the operator adds, such as the job id)."""
    from pyflink.datastream import StreamExecutionEnvironment

    j_env = StreamExecutionEnvironment.get_execution_environment()._j_stream_execution_environment
    return {str(k): str(v) for k, v in dict(j_env.getConfiguration().toMap()).items()}


def configure(
    conf: Configuration,
    settings: Settings,
    restore_from: str | None = None,
    local: bool = True,
    cluster: dict[str, str] | None = None,
) -> None:
    """The job's checkpointing, restarts and (`local`: the mini-cluster's) REST endpoint.

    The job's id: chosen here (the run's record names its checkpoint folder by it), except when
    Flink's own client submits the job and its configuration (`cluster`; unset: read from Flink's
    context) already has one. The Flink Kubernetes Operator picks the id of an application-mode
    job and tracks the job by it, and Flink with HA fixes one itself: main() runs again after a
    JobManager failover, and an id of ours would make it a new job."""
    global _current
    c = settings.checkpoint
    entries = {
        "execution.checkpointing.interval": f"{c.interval_ms} ms",
        # While a source reads a backlog (a bounded run says so: RestartableBoundedSource),
        # checkpoints come less often: nobody waits on a replay's alerts, and each snapshot
        # costs throughput.
        "execution.checkpointing.interval-during-backlog": f"{c.longest_interval_ms} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.timeout": f"{c.timeout_ms} ms",
        "execution.checkpointing.dir": settings.checkpoint_uri,
        "execution.checkpointing.savepoint-dir": settings.savepoint_uri,
        "execution.checkpointing.num-retained": str(c.retained),
        # Kept when the job is cancelled (Ctrl-C) so that --resume can continue from it.
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "state.backend.type": c.state_backend,
        "restart-strategy.type": "exponential-delay",
        "restart-strategy.exponential-delay.initial-backoff": f"{c.restart_initial_backoff_ms} ms",
        "restart-strategy.exponential-delay.max-backoff": f"{c.restart_max_backoff_ms} ms",
        "restart-strategy.exponential-delay.backoff-multiplier": "2.0",
        "restart-strategy.exponential-delay.jitter-factor": "0.1",
        "restart-strategy.exponential-delay.attempts-before-reset-backoff": str(c.restart_attempts),
        # REST serves metrics at most this old (Flink's default, 10 s, is too coarse for
        # `fraudstream bench`, which samples the source's record count).
        "metrics.fetcher.update-interval": "500 ms",
    }
    if local:  # reaching the job from `fraudstream savepoint`; a cluster has its own REST endpoint
        entries["rest.bind-address"] = settings.pipeline.bind_host
        entries["rest.address"] = settings.pipeline.reach_host
        entries["rest.bind-port"] = str(settings.pipeline.rest_port)
        entries["rest.port"] = str(settings.pipeline.rest_port)
    if restore_from is not None:
        entries["execution.state-recovery.path"] = restore_from
    if c.state_backend == "rocksdb":  # only what changed since the last checkpoint is uploaded
        entries["execution.checkpointing.incremental"] = "true"
    given = None
    if submitted_by_flink(settings, local):
        given = (client_configuration() if cluster is None else cluster).get(JOB_ID_KEY) or None
    # Else a job id chosen here, so that the run's record names the folder of its checkpoints.
    job_id = given or uuid.uuid4().hex
    if given is None:
        entries[JOB_ID_KEY] = job_id
    for key, value in entries.items():
        conf.set_string(key, value)
    root = local_dir(settings.checkpoint_uri)
    _current = None
    if root is not None and settings.pipeline.source == "kafka":
        _current = RunRecord(
            root / "runs" / f"{job_id}.json",
            job_id,
            time.time(),
            restore_from,
            settings.kafka.group_id,
            settings.kafka.raw_topic,
            transaction_timeout_ms=settings.kafka.transaction_timeout_ms,
            state_layout=STATE_LAYOUT,
            scored=scores(settings),
            live_rules=follows_topic(settings, "kafka"),
            delivery=settings.kafka.delivery,
        )
        _current.save()


def local_dir(uri: str) -> Path | None:
    """The directory behind a file:// URI, or None for remote filesystems."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    return Path(unquote(parsed.path))


def latest_checkpoint(settings: Settings) -> Path:
    """The newest completed checkpoint (a `chk-N` folder with its `_metadata`) of any earlier run
    (for checkpoints left by versions that kept no run records; see `resume_point`)."""
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
    return _newest_of(found)


def _runs(root: Path) -> list[RunRecord]:
    """The Kafka runs recorded under `root`, oldest first."""
    records = [RunRecord.load(p) for p in (root / "runs").glob("*.json")]
    return sorted((r for r in records if r is not None), key=lambda r: r.started)


def _newest_of(found: list[Path]) -> Path:
    # By when the metadata was written, not the folder's time: Flink deletes a subsumed
    # checkpoint's files before its metadata, and a run killed in between leaves an old
    # folder, touched last, whose metadata points at files that are gone.
    return max(found, key=lambda p: ((p / "_metadata").stat().st_mtime, int(p.name.removeprefix("chk-"))))


def finished_unrecorded(run: RunRecord) -> bool:
    """The job finished, but its run was ended (killed) before it could record that.

    A job's newest completed checkpoint stays on disk while it runs and after a kill, a
    cancel or a failure; Flink deletes them all only when the job finishes. (A job that
    finished before its first checkpoint cannot be told from one killed before it: its
    run notes `job_finished` within moments of the job's end, before it commits: only a kill
    in that moment, of a job that finished before its first checkpoint was seen, is missed.)"""
    if run.ended is not None or run.stopping:
        return False
    return run.job_finished or (run.checkpointed and not run.checkpoints())


def reconcile(settings: Settings) -> str | None:
    """Complete the last run if it finished its bounded input but was killed before it
    committed its end offsets (else the next run would read that tail again); returns a
    line saying so, or None. Run before every Kafka run."""
    root = local_dir(settings.checkpoint_uri)
    if root is None:
        return None
    runs = _runs(root)
    if not runs or not finished_unrecorded(runs[-1]) or runs[-1].bounded_end is None:
        return None
    last = runs[-1]
    from fraudstream.kafka.clients import commit_offsets

    k = settings.kafka.model_copy(update={"group_id": last.group_id, "raw_topic": last.raw_topic})
    commit_offsets(k, last.raw_topic, last.bounded_end)
    last.update(ended="finished")
    return (
        f"the last run (job {last.job_id}) finished its bounded input but ended before recording it: "
        f"committed its end offsets for group {last.group_id} now"
    )


def resume_point(settings: Settings, now: float | None = None) -> Path:
    """Where `--resume` continues: the last run's newest checkpoint, or, if it made none,
    what that run itself started from. Never an older run's state: a run that finished
    leaves nothing to resume. Refuses a checkpoint whose transactions the broker has dropped."""
    root = local_dir(settings.checkpoint_uri)
    runs = _runs(root) if root is not None else []
    if not runs:  # checkpoints written before runs were recorded: an older layout for sure
        point = latest_checkpoint(settings)
        check_layout(point, None)
    else:
        point = _follow(runs[-1], settings)
        # a run restored from a point it did not write (a savepoint of no recorded run) vouches for it
        check_layout(point, writer_of(point, runs) or runs[-1], settings)
    if point.name.startswith("chk-"):
        owner = next((r for r in runs if r.job_id == point.parent.name), None)
        check_transactions(point, settings, now, owner.transaction_timeout_ms if owner else None)
    return point


def writer_of(point: Path, runs: list[RunRecord]) -> RunRecord | None:
    """The recorded run that wrote a checkpoint (`<job id>/chk-N`) or a savepoint (Flink names
    it `savepoint-<first 6 digits of the job id>-<random>`), if any."""
    if point.name.startswith("chk-"):
        return next((r for r in runs if r.job_id == point.parent.name), None)
    parts = point.name.split("-")
    if len(parts) == 3 and parts[0] == "savepoint" and len(parts[1]) == 6:
        found = [r for r in runs if r.job_id.startswith(parts[1])]
        return found[-1] if found else None
    return None


def check_layout(point: Path, writer: RunRecord | None, settings: Settings | None = None) -> None:
    """Refuse a point written with another state layout than this version's, in one line
    (Flink would fail each restart with a serializer trace). `writer` None: written before
    runs were recorded, so an older layout. With `settings`: also a point of a run with the
    model's steps for a run without them, or the reverse."""
    layout = writer.state_layout if writer is not None else 1
    if layout == STATE_LAYOUT:
        if settings is not None and writer is not None and writer.scored != scores(settings):
            had, has = ("with", "without") if writer.scored else ("without", "with")
            raise OtherSteps(
                f"{point} was written by a run {had} a risk model, and this run is {has} one: their steps "
                "differ, so its state does not restore here; run with the same --model (model.path) "
                "as that run, or start afresh without --resume or --from-savepoint"
            )
        if settings is not None and writer is not None and writer.live_rules != follows_topic(settings, "kafka"):
            had, has = ("followed", "does not follow") if writer.live_rules else ("did not follow", "follows")
            raise OtherSteps(
                f"{point} was written by a run that {had} the rules topic, and this run {has} it "
                "(rules.live, the engine): their steps differ, so its state does not restore here; run with "
                "the same rules.live as that run, or start afresh without --resume or --from-savepoint"
            )
        if settings is not None and writer is not None and writer.delivery != settings.kafka.delivery:
            raise OtherSteps(
                f"{point} was written by a run whose sinks were {writer.delivery}, and this run's are "
                f"{settings.kafka.delivery} (kafka.delivery): their state does not restore into each other; run "
                f"with kafka.delivery={writer.delivery}, or stop that run with 'fraudstream savepoint --stop' and "
                "start afresh with --start-from committed"
            )
        return
    if layout < STATE_LAYOUT:
        raise OlderStateLayout(
            f"{point} was written by an older version of the job's state layout ({_LAYOUT_CHANGES[layout]}), "
            "which this version cannot restore: start afresh without --resume or --from-savepoint "
            "(--start-from committed continues from the consumer group's position)"
        )
    raise OlderStateLayout(
        f"{point} was written by a newer version of the job's state layout ({layout}; this one reads "
        f"{STATE_LAYOUT}): run it with that version, or start afresh without --resume or --from-savepoint"
    )


def _follow(last: RunRecord, settings: Settings) -> Path:
    if last.ended == "finished" or finished_unrecorded(last):
        raise NothingToResume(
            f"the last run (job {last.job_id}) finished: nothing to resume; run without --resume "
            "(it continues from the consumer group's committed position)"
        )
    found = last.checkpoints()
    if found:
        return _newest_of(found)
    if last.stopping and last.checkpointed:
        raise NothingToResume(
            f"the last run (job {last.job_id}) was stopped with a savepoint: "
            f"pass it to --from-savepoint (savepoints are under {settings.savepoint_uri})"
        )
    # Ended before its first checkpoint: it committed nothing, so continue what it continued.
    if last.restored_from is not None and (Path(last.restored_from) / "_metadata").is_file():
        return Path(last.restored_from)
    if last.restored_from is not None:
        raise NothingToResume(
            f"the last run made no checkpoint, and what it was restored from ({last.restored_from}) is gone: "
            "run without --resume to start fresh"
        )
    raise NothingToResume(
        f"the last run (job {last.job_id}) ended before its first checkpoint: nothing to resume; "
        "run without --resume to start fresh"
    )


def check_transactions(
    checkpoint: Path, settings: Settings, now: float | None = None, timeout_ms: int | None = None
) -> None:
    """Refuse a checkpoint older than the broker keeps a transaction open.

    A checkpoint hands its Kafka transactions to the sinks' committers, and a job killed
    before they committed commits them when restored; the broker aborts a transaction
    `timeout_ms` (the checkpointing run's `kafka.transaction_timeout_ms`; else this run's)
    after it began, at most one checkpoint interval plus the checkpoint's own duration (up to
    `checkpoint.timeout_ms`) before the checkpoint's metadata was written, and the alerts in it
    are then silently gone."""
    now = time.time() if now is None else now
    timeout_ms = timeout_ms or settings.kafka.transaction_timeout_ms
    age_ms = (now - (checkpoint / "_metadata").stat().st_mtime) * 1000
    limit_ms = timeout_ms - settings.checkpoint.longest_interval_ms - settings.checkpoint.timeout_ms
    if age_ms <= limit_ms:
        return
    raise TransactionsExpired(
        f"{checkpoint} is {age_ms / 60_000:.0f} min old, older than kafka.transaction_timeout_ms "
        f"({timeout_ms / 60_000:g} min, less a checkpoint's interval and timeout) allows: the broker has aborted the alerts "
        "it had not committed yet, and resuming would lose them silently; to accept that loss pass it to "
        "--from-savepoint, to recompute them run without --resume from an earlier position (--start-from earliest)"
    )


class RunWatcher:
    """Notes in the run's record, while it runs, that it made a checkpoint and whether a
    `savepoint --stop` is under way: what `finished_unrecorded` needs after a kill."""

    def __init__(self, run: RunRecord, stop_marker: Path) -> None:
        self.run = run
        self.stop_marker = stop_marker

    def poll(self) -> None:
        changes: dict[str, bool] = {}
        if not self.run.checkpointed and self.run.checkpoints():
            changes["checkpointed"] = True
        if not self.run.stopping and self.stop_marker.exists():
            changes["stopping"] = True
        if changes:
            self.run.update(**changes)


def check_restore_path(path: str, settings: Settings | None = None) -> str:
    """A savepoint or checkpoint given by the user: a readable answer if it is not one, or if
    the run that wrote it recorded an older state layout. A checkpoint's record lies beside it
    (`<dir>/runs/<job id>.json`); a savepoint's is found with `settings` (its checkpoint dir).
    A point of no recorded run is let through (Flink will tell)."""
    if "://" in path and not path.startswith("file://"):
        return path  # remote: Flink will tell
    local = local_dir(path) if path.startswith("file://") else Path(path).expanduser().resolve()
    assert local is not None
    if not (local / "_metadata").is_file():
        raise UserFacingError(f"{local} is not a savepoint or checkpoint (it has no _metadata file)")
    roots = [local.parent.parent] if local.name.startswith("chk-") else []
    root = local_dir(settings.checkpoint_uri) if settings is not None else None
    if root is not None:
        roots.append(root)
    for r in dict.fromkeys(roots):
        writer = writer_of(local, _runs(r))
        if writer is not None:
            check_layout(local, writer, settings)
            break
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


def new_failures(rest_port: int, job_id: str, seen: set[int], host: str = "127.0.0.1") -> list[str]:
    """Failures the job recovered from (or is recovering from) since the last call, one line each."""
    import json
    import urllib.request

    url = f"http://{host}:{rest_port}/jobs/{job_id}/exceptions?maxExceptions=10"
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
