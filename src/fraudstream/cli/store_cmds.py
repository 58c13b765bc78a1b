"""`fraudstream store`: the alert store's schema, a local PostgreSQL server, and the copier alone."""

from __future__ import annotations

import click

from fraudstream.cli.options import Group


@click.group("store", cls=Group)
def store_group() -> None:
    """The alert store: SQLite by default (store.db_path), or a PostgreSQL database shared by a
    team (store.url = postgresql://USER@HOST:PORT/DB)."""
