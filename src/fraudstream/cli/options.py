"""Options a group shares with every command under it, typed before or after the command.

`fraudstream query --json stats` and `fraudstream query stats --json` mean the same, and so
do `fraudstream --data-dir D run` and `fraudstream run --data-dir D`: a group that shares
an option gives each command below it a copy. Wherever it was typed, the value is read with
`shared_value`; typed at several levels, the one nearest the command wins (a repeatable
option collects every level's values, outermost first). A command's own option of the same
name takes precedence over a shared copy (`backtest --set` is the candidate's change).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click

OptionFactory = Callable[[], click.Option]
_VALUES = "fraudstream.shared_options"  # key in click's ctx.meta, which all nested contexts share


class Command(click.Command):
    """A command that also accepts the options its enclosing groups share."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inherited: list[tuple[str, click.Option]] = []  # (help section, option)
        self.received: list[tuple[str, Sequence[OptionFactory]]] = []

    def inherit(self, title: str, factories: Sequence[OptionFactory]) -> None:
        """Add a copy of each option, unless this command has its own of that name."""
        self.received.append((title, factories))
        taken = {o for p in self.params for o in (*p.opts, *p.secondary_opts)}
        names = {p.name for p in self.params}
        for make in factories:
            option = make()
            if option.name in names or taken & {*option.opts, *option.secondary_opts}:
                continue
            # The environment is read where the option is defined; a copy reading it again
            # would override a flag typed further out.
            option.envvar = None
            self.params.append(option)
            self.inherited.append((title, option))

    def recorded_names(self) -> list[str]:
        return [o.name for _, o in self.inherited if o.name]

    def invoke(self, ctx: click.Context) -> Any:
        _record(ctx, self.recorded_names())
        return super().invoke(ctx)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        copies = {id(o) for _, o in self.inherited}
        params = [p for p in self.get_params(ctx) if isinstance(p, click.Option) and id(p) not in copies]
        own = [r for r in (p.get_help_record(ctx) for p in params) if r is not None]
        if own:
            with formatter.section("Options"):
                formatter.write_dl(own)
        sections: dict[str, list[tuple[str, str]]] = {}
        for title, option in self.inherited:
            record = option.get_help_record(ctx)
            if record is not None:
                sections.setdefault(title, []).append(record)
        for title, records in sections.items():
            with formatter.section(title):
                formatter.write_dl(records)


class Group(click.Group, Command):
    """A group whose `shares` options are its own and also every subcommand's (recursively)."""

    command_class = Command
    group_class = type  # subgroups are Groups too

    def __init__(
        self, *args: Any, shares: Sequence[OptionFactory] = (), shares_title: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.shares = list(shares)
        self.shares_title = shares_title or f"Options of '{self.name}' (also accepted before the subcommand)"
        own = [make() for make in self.shares]
        self.params.extend(own)
        self.shared_names = [o.name for o in own if o.name]

    def recorded_names(self) -> list[str]:
        return self.shared_names + super().recorded_names()

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if not isinstance(cmd, Command):
            raise TypeError(f"command '{cmd.name}' must be a fraudstream.cli.options.Command (cls=Command)")
        super().add_command(cmd, name)
        if self.shares:
            cmd.inherit(self.shares_title, self.shares)
        for title, factories in self.received:
            cmd.inherit(title, factories)

    def inherit(self, title: str, factories: Sequence[OptionFactory]) -> None:
        super().inherit(title, factories)
        for cmd in self.commands.values():
            assert isinstance(cmd, Command)
            cmd.inherit(title, factories)


def _record(ctx: click.Context, names: list[str]) -> None:
    """Take the shared options out of this level's parameters and note the ones given."""
    values = ctx.meta.setdefault(_VALUES, {})
    for name in names:
        value = ctx.params.pop(name, None)
        if value is None or value == ():
            continue
        if isinstance(value, tuple):  # repeatable: outer levels first, so inner ones override
            values[name] = values.get(name, ()) + value
        else:
            values[name] = value


def shared_value(ctx: click.Context, name: str, default: Any = None) -> Any:
    """A shared option's value, wherever on the command line it was given."""
    return ctx.meta.get(_VALUES, {}).get(name, default)


def model_option() -> click.Option:
    """`--model PATH`: the risk model a job scores every order with (model.path); for `run` and `demo`."""
    from pathlib import Path

    return click.Option(
        ["--model", "model_path"],
        type=click.Path(path_type=Path, dir_okay=False),
        help="A model file written by 'fraudstream train': score every order and raise ACCOUNT_TAKEOVER "
        "(sql engine only) [model.path, unset: rules only].",
    )
