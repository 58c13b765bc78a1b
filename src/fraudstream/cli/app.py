"""What every command shares: the global options, the settings they build, user errors and
the SIGTERM helper. The commands import from here; `cli/main.py` assembles them."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from fraudstream.cli.options import shared_value
from fraudstream.config import PROFILE_ENV, PROFILES, Settings, load_settings, parse_set_option, pin_generator
from fraudstream.errors import UserFacingError
from fraudstream.generator import LIVE_START

GLOBAL_OPTIONS_TITLE = "Global options (accepted before or after the command's name)"


class UserError(UserFacingError):
    """A mistake the user can fix; shown as one line, no traceback."""


def _config_option() -> click.Option:
    return click.Option(
        ["--config", "config_file"],
        type=click.Path(path_type=Path, dir_okay=False),
        envvar="FRAUDSTREAM_CONFIG",
        help="TOML settings file (env: FRAUDSTREAM_CONFIG). See 'fraudstream config show'.",
    )


def _set_option() -> click.Option:
    return click.Option(
        ["--set", "set_items"],
        multiple=True,
        metavar="SECTION.KEY=VALUE",
        help="Override any setting, e.g. --set detectors.velocity_threshold=5 (repeatable).",
    )


def _profile_option() -> click.Option:
    return click.Option(
        ["--profile"],
        type=click.Choice(sorted(PROFILES)),
        envvar=PROFILE_ENV,
        help="Named rule settings under the file and flags: 'default' (tuned) or 'seed' (the replaced system's).",
    )


def _data_dir_option() -> click.Option:
    return click.Option(
        ["--data-dir"],
        type=click.Path(path_type=Path, file_okay=False),
        help="Where the database, app.log and Flink logs go (env: FRAUDSTREAM_DATA_DIR; default ./data).",
    )


# Shared by the root group with every command (see cli/options.py).
GLOBAL_OPTIONS = (_config_option, _set_option, _profile_option, _data_dir_option)


@dataclass(frozen=True)
class GlobalOptions:
    """The global options as given, wherever they were typed."""

    config: Path | None
    set: dict[str, str]
    profile: str | None
    data_dir: Path | None

    def overrides(self) -> dict[str, Any]:
        """Dotted setting overrides: the --set items, and --data-dir."""
        out: dict[str, Any] = dict(self.set)
        if self.data_dir is not None:
            out["data_dir"] = self.data_dir
        return out


def global_options(ctx: click.Context) -> GlobalOptions:
    return GlobalOptions(
        config=shared_value(ctx, "config_file"),
        set=parse_set_option(shared_value(ctx, "set_items", ())),
        profile=shared_value(ctx, "profile"),
        data_dir=shared_value(ctx, "data_dir"),
    )


def resolve_settings(ctx: click.Context, **flags: Any) -> Settings:
    """The settings of this command: defaults < file < environment < --set < the command's
    flags (dotted keys; a flag left out is None and changes nothing)."""
    given = global_options(ctx)
    overrides = given.overrides()
    overrides.update({k: v for k, v in flags.items() if v is not None})
    return load_settings(given.config, overrides, profile=given.profile)


def pin_stream(settings: Settings) -> Settings:
    """The generator's stream of a run: live, on the wall clock, when it is paced and was not
    asked to be reproducible (no seed, no start time, a rate above 0); and with its seed
    fixed, which the banner shows (a live stream's orders also depend on when they are made)."""
    g = settings.generator
    if g.seed is None and g.start_time is None and g.rate > 0:
        settings = settings.with_overrides({"generator.start_time": LIVE_START})
    return pin_generator(settings)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C in pure-Python loops, so they stop cleanly and flush."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
