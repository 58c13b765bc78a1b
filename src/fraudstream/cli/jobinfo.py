"""Moved to `fraudstream.flink.jobinfo` (shared with the dashboard); kept for older imports."""

from fraudstream.flink.jobinfo import JobInfo, process_start

__all__ = ["JobInfo", "process_start"]
