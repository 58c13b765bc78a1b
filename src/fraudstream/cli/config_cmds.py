"""`fraudstream config show`: the effective settings."""

from __future__ import annotations

import click
import orjson

from fraudstream.cli.app import resolve_settings
from fraudstream.cli.options import Group
from fraudstream.config import to_toml


@click.group("config", cls=Group)
def config_group() -> None:
    """Inspect the effective configuration."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of TOML-like text.")
@click.pass_context
def config_show(ctx: click.Context, as_json: bool) -> None:
    """Print the effective settings (defaults < file < environment < flags)."""
    settings = resolve_settings(ctx)
    data = settings.redacted()
    if as_json:
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(to_toml(data), nl=False)
