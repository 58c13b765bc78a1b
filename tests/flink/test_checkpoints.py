"""Finding what to resume from (no Flink needed)."""

from __future__ import annotations

import os

import pytest

from fraudstream.config import load_settings
from fraudstream.errors import UserFacingError
from fraudstream.flink.checkpoints import NothingToResume, check_restore_path, latest_checkpoint


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
