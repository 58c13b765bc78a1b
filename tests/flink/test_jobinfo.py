"""Telling whether the run recorded in job.json is still alive (no Flink needed)."""

from __future__ import annotations

import os
import subprocess
import sys

from fraudstream.flink.jobinfo import JobInfo, process_start


def test_a_live_run_is_recognised_and_round_trips_through_the_file(tmp_path):
    info = JobInfo(os.getpid(), "job", 8081, "file:///sp", process_start(os.getpid()))
    info.write(tmp_path / "job.json")
    assert JobInfo.read(tmp_path / "job.json") == info
    assert info.is_running()


def test_a_pid_taken_over_by_another_process_is_not_the_run():
    # PIDs wrap around; the same number with another start time is some other process.
    started = process_start(os.getpid())
    assert started is not None
    assert not JobInfo(os.getpid(), "job", 8081, "file:///sp", started - 1).is_running()


def test_an_ended_run_is_not_running():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not JobInfo(child.pid, "job", 8081, "file:///sp").is_running()


def test_an_old_job_file_without_a_start_time_still_reads(tmp_path):
    (tmp_path / "job.json").write_text('{"pid": 1, "job_id": "j", "rest_port": 1, "savepoint_uri": "x"}')
    info = JobInfo.read(tmp_path / "job.json")
    assert info is not None and info.started is None
