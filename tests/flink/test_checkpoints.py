"""Finding what to resume from (no Flink needed)."""

from __future__ import annotations

import json
import os
import time

import pytest

from fraudstream.config import load_settings
from fraudstream.errors import UserFacingError
from fraudstream.flink.checkpoints import (
    STATE_LAYOUT,
    NothingToResume,
    OlderStateLayout,
    TransactionsExpired,
    check_restore_path,
    latest_checkpoint,
)
from tests.conftest import REPORT


def _checkpoint(root, job: str, n: int, mtime: float, complete: bool = True, touched: float | None = None):
    folder = root / "checkpoints" / job / f"chk-{n}"
    folder.mkdir(parents=True)
    if complete:
        (folder / "_metadata").write_bytes(b"x")
        os.utime(folder / "_metadata", (mtime, mtime))
    touched = touched or mtime
    os.utime(folder, (touched, touched))
    return folder


def test_resume_picks_the_newest_completed_checkpoint_of_any_run(tmp_path):
    settings = load_settings(flags={"data_dir": str(tmp_path)}, environ={})
    _checkpoint(tmp_path, "job-a", 7, 1_000)
    newest = _checkpoint(tmp_path, "job-b", 2, 2_000)
    _checkpoint(tmp_path, "job-b", 3, 3_000, complete=False)  # still being written when killed
    assert latest_checkpoint(settings) == newest


def test_resume_skips_an_old_checkpoint_whose_deletion_was_cut_short(tmp_path):
    """Flink deletes a subsumed checkpoint's files before its metadata; a kill in between
    leaves the old folder touched last. Seen in CI: resuming from it failed ten times."""
    settings = load_settings(flags={"data_dir": str(tmp_path)}, environ={})
    _checkpoint(tmp_path, "job-a", 1, 1_000, touched=5_000)
    newest = _checkpoint(tmp_path, "job-a", 4, 3_000)
    assert latest_checkpoint(settings) == newest


def test_nothing_to_resume_is_a_readable_error(tmp_path):
    settings = load_settings(flags={"data_dir": str(tmp_path)}, environ={})
    with pytest.raises(NothingToResume, match="run without --resume"):
        latest_checkpoint(settings)


def test_a_savepoint_path_must_hold_metadata(tmp_path):
    with pytest.raises(UserFacingError, match="not a savepoint"):
        check_restore_path(str(tmp_path))
    (tmp_path / "_metadata").write_bytes(b"x")
    assert check_restore_path(str(tmp_path)) == str(tmp_path.resolve())
    assert check_restore_path(tmp_path.resolve().as_uri()) == str(tmp_path.resolve())


# ---- the lineage of runs (checkpoints.RunRecord) -----------------------------------------


def _kafka_settings(tmp_path, **kafka):
    flags = {"data_dir": str(tmp_path), "pipeline.source": "kafka"}
    flags.update({f"kafka.{k}": v for k, v in kafka.items()})
    return load_settings(flags=flags, environ={})


def _run(tmp_path, job: str, started: float, **fields) -> None:
    """A run record as `fraudstream run` leaves it beside the checkpoints (this version's
    state layout, of a run that followed the rules topic as the defaults on Kafka do, unless
    `fields` say otherwise; state_layout=None: a record without it)."""
    runs = tmp_path / "checkpoints" / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    record = {"job_id": job, "started": started, "state_layout": STATE_LAYOUT, "live_rules": True, **fields}
    if record["state_layout"] is None:
        del record["state_layout"]
    (runs / f"{job}.json").write_text(json.dumps(record))


def _resume(settings):
    """What `run --resume` starts from."""
    from fraudstream.cli.run_cmd import _restore_point
    from fraudstream.flink.sources import SourceSpec

    return _restore_point(settings, SourceSpec("kafka"), True, None)


def test_resume_after_a_run_that_finished_refuses_instead_of_replaying_an_older_run(tmp_path):
    """Issue 13: run A killed after a checkpoint, B resumed from it and finished (Flink then
    deletes B's checkpoints), so A's was the newest on disk and a third --resume replayed
    everything since A: 13,095 alerts twice."""
    settings = _kafka_settings(tmp_path)
    now = time.time()
    a = _checkpoint(tmp_path, "job-a", 3, now - 60)
    _run(tmp_path, "job-a", now - 90, checkpointed=True)
    _run(tmp_path, "job-b", now - 50, restored_from=str(a), checkpointed=True, ended="finished")
    with pytest.raises(NothingToResume, match="finished: nothing to resume; run without --resume"):
        _resume(settings)


def test_resume_after_a_finished_run_killed_before_it_recorded_that_refuses_too(tmp_path):
    """B's job finished (its checkpoints are gone although it made some), but the run was
    killed before it could record it."""
    settings = _kafka_settings(tmp_path)
    now = time.time()
    a = _checkpoint(tmp_path, "job-a", 3, now - 60)
    _run(tmp_path, "job-a", now - 90, checkpointed=True)
    _run(tmp_path, "job-b", now - 50, restored_from=str(a), checkpointed=True)
    (tmp_path / "checkpoints" / "job-b" / "shared").mkdir(parents=True)
    with pytest.raises(NothingToResume, match="finished"):
        _resume(settings)


def test_resume_takes_the_last_runs_newest_checkpoint_and_else_what_that_run_started_from(tmp_path):
    settings = _kafka_settings(tmp_path)
    now = time.time()
    a = _checkpoint(tmp_path, "job-a", 3, now - 60)
    _run(tmp_path, "job-a", now - 90, checkpointed=True)
    # B, restored from A, killed before its first checkpoint: it committed nothing
    _run(tmp_path, "job-b", now - 50, restored_from=str(a))
    assert _resume(settings) == str(a)
    # C, restored from A too, made checkpoints and was killed: its newest one
    c = _checkpoint(tmp_path, "job-c", 8, now - 10)
    _checkpoint(tmp_path, "job-c", 7, now - 20)
    _run(tmp_path, "job-c", now - 40, restored_from=str(a), checkpointed=True)
    assert _resume(settings) == str(c)


def test_resume_from_a_checkpoint_older_than_the_transaction_timeout_is_refused(tmp_path):
    """The broker aborts a transaction kafka.transaction_timeout_ms after it began; a restore
    would then commit nothing for the alerts in it, silently."""
    settings = _kafka_settings(tmp_path, transaction_timeout_ms=120_000)
    now = time.time()
    _checkpoint(tmp_path, "job-a", 3, now - 150)
    _run(tmp_path, "job-a", now - 200, checkpointed=True)
    with pytest.raises(TransactionsExpired, match="older than kafka.transaction_timeout_ms .* --from-savepoint"):
        _resume(settings)
    young = _kafka_settings(tmp_path, transaction_timeout_ms=600_000)
    assert _resume(young).endswith("chk-3")
    # The broker keeps the timeout the checkpointing run's sinks gave it, not today's setting.
    _run(tmp_path, "job-a", now - 200, checkpointed=True, transaction_timeout_ms=120_000)
    with pytest.raises(TransactionsExpired, match="older than kafka.transaction_timeout_ms"):
        _resume(young)
    with REPORT.open("a") as fh:  # a line for the reliability table (docs/reliability.md)
        fh.write(
            f"{time.strftime('%Y-%m-%d %H:%M')} | expired transaction: `--resume` of a checkpoint 150 s old with "
            "kafka.transaction_timeout_ms=120000 | - | refused in one line naming the setting and the ways on; "
            "with the 10-min default the same checkpoint resumes\n"
        )


def test_a_run_whose_job_was_seen_to_finish_has_nothing_to_resume_even_without_a_checkpoint_seen(tmp_path):
    """A short bounded run whose only checkpoint was the final one (deleted at the end, never
    seen by the watcher), killed before it committed its end: it noted `job_finished` first,
    so `--resume` does not go back to what that run had started from (an older run's state)."""
    settings = _kafka_settings(tmp_path)
    now = time.time()
    a = _checkpoint(tmp_path, "job-a", 3, now - 60)
    _run(tmp_path, "job-a", now - 90, checkpointed=True)
    _run(tmp_path, "job-b", now - 50, restored_from=str(a), job_finished=True)
    with pytest.raises(NothingToResume, match="finished"):
        _resume(settings)


def test_a_checkpoint_or_savepoint_of_an_older_state_layout_is_refused_in_one_line(tmp_path):
    """Issue 14: the SQL engine's rows grew `appended_at`; Flink restoring an older checkpoint
    fails every restart with a serializer trace. A record of the previous version has no
    `state_layout` (layout 1); checkpoints from before run records existed are older still."""
    settings = _kafka_settings(tmp_path)
    now = time.time()
    old = _checkpoint(tmp_path, "job-a", 3, now - 60)
    with pytest.raises(OlderStateLayout, match="older version of the job's state layout .*without --resume"):
        _resume(settings)  # no run records at all
    _run(tmp_path, "job-a", now - 90, checkpointed=True, state_layout=None)
    with pytest.raises(OlderStateLayout, match=r"chk-3 was written by an older version .*appended_at"):
        _resume(settings)
    with pytest.raises(OlderStateLayout, match="older version"):
        check_restore_path(str(old))  # --from-savepoint of that checkpoint: its record lies beside it
    # a savepoint of that run, found by the job id Flink puts in its name
    savepoint = tmp_path / "savepoints" / "savepoint-jobaaa-0123456789ab"
    savepoint.mkdir(parents=True)
    (savepoint / "_metadata").write_bytes(b"x")
    _run(tmp_path, "jobaaa42", now - 80, checkpointed=True, stopping=True, state_layout=None)
    with pytest.raises(OlderStateLayout, match="older version"):
        check_restore_path(str(savepoint), settings)
    assert check_restore_path(str(savepoint)) == str(savepoint.resolve())  # no settings: cannot know
    # this version's run resumes its own checkpoint
    new = _checkpoint(tmp_path, "job-c", 5, now - 10)
    _run(tmp_path, "job-c", now - 30, checkpointed=True)
    assert _resume(settings) == str(new)
    assert check_restore_path(str(new)) == str(new.resolve())


class _Conf:
    """Stands in for Flink's Configuration: what configure() sets."""

    def __init__(self) -> None:
        self.entries: dict[str, str] = {}

    def set_string(self, key: str, value: str) -> None:
        self.entries[key] = value


def test_a_backlog_is_checkpointed_at_its_own_slower_pace(tmp_path):
    from fraudstream.flink.checkpoints import configure

    conf = _Conf()
    settings = load_settings(flags={"data_dir": str(tmp_path), "checkpoint.backlog_interval_ms": 4_000}, environ={})
    configure(conf, settings)
    assert conf.entries["execution.checkpointing.interval"] == "250 ms"
    # FLIP-309: the pace while a source says it reads a backlog (the bounded Kafka source does)
    assert conf.entries["execution.checkpointing.interval-during-backlog"] == "4000 ms"
    slower = _Conf()
    configure(slower, load_settings(flags={"data_dir": str(tmp_path), "checkpoint.interval_ms": 9_000}, environ={}))
    assert slower.entries["execution.checkpointing.interval-during-backlog"] == "9000 ms"  # never faster than live
