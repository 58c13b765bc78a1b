"""Backtesting: replay an archived period through the job with other settings, and compare."""

from fraudstream.backtest.replay import BacktestRun, archived_period, newest_event_time, run_replay

__all__ = ["BacktestRun", "archived_period", "newest_event_time", "run_replay"]
