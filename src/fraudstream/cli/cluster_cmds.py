"""`fraudstream cluster`: a local standalone Flink cluster, to run the job as it runs on any cluster."""

from __future__ import annotations

import click

from fraudstream.cli.options import Group


@click.group("cluster", cls=Group)
def cluster_group() -> None:
    """Start, stop and look at a local standalone Flink cluster (a JobManager and TaskManagers
    from the Flink that PyFlink carries, with its web UI); submit the job to it with
    'fraudstream run --jobmanager HOST:PORT'."""
