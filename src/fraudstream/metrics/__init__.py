"""Prometheus metrics: names shared by the job's reporter, this process and the dashboard."""
