"""Entry point of the `fraudstream` command: the root group, its commands, and how errors end.

Each command lives in its own module and imports what it shares with the others from
`cli/app.py`; only this module puts them together, so every import runs one way.
"""

from __future__ import annotations

import logging
import re
import sys

import click

from fraudstream import __version__
from fraudstream.cli import (
    bench_cmd,
    cluster_cmds,
    config_cmds,
    dashboard_cmd,
    job_cmds,
    kafka_cmds,
    model_cmds,
    notify_cmd,
    produce_cmd,
    quality_cmds,
    query_cmds,
    rules_cmds,
    run_cmd,
    store_cmds,
)
from fraudstream.cli.app import GLOBAL_OPTIONS, GLOBAL_OPTIONS_TITLE
from fraudstream.cli.options import Group
from fraudstream.config import ConfigError
from fraudstream.errors import UserFacingError
from fraudstream.store import StoreMissingError

logger = logging.getLogger("fraudstream.cli")


@click.group(
    cls=Group,
    shares=GLOBAL_OPTIONS,
    shares_title=GLOBAL_OPTIONS_TITLE,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="fraudstream")
def cli() -> None:
    """Real-time fraud detection for food-delivery orders on Apache Flink.

    \b
    Typical session:
      fraudstream run                         # generator -> Flink job -> alerts (Ctrl-C to stop)
      fraudstream produce --count 10000 --seed 7 -o orders.jsonl
      fraudstream run --source file:orders.jsonl
      fraudstream query stats

    The global options below may also follow the command's name ('fraudstream run --data-dir D'
    is 'fraudstream --data-dir D run'), and a group's options its subcommand's name.
    """


for command in (
    run_cmd.run,
    produce_cmd.produce,
    query_cmds.query,
    config_cmds.config_group,
    kafka_cmds.kafka_group,
    kafka_cmds.alerts_group,
    kafka_cmds.demo,
    job_cmds.savepoint,
    quality_cmds.evaluate,
    quality_cmds.backtest,
    model_cmds.train,
    model_cmds.model_group,
    bench_cmd.bench,
    dashboard_cmd.dashboard,
    notify_cmd.notify_group,
    cluster_cmds.cluster_group,
    store_cmds.store_group,
    rules_cmds.rules_group,
):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> int:
    try:
        code = cli.main(args=argv, prog_name="fraudstream", standalone_mode=False)
        if isinstance(code, int) and code:  # ctx.exit(n) from a command
            return code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.exceptions.NoArgsIsHelpError as exc:  # `fraudstream` or `fraudstream query` alone
        click.echo(exc.format_message(), err=True)
        return 2
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        click.echo(f"fraudstream: error: {exc.format_message()}{hint}", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"fraudstream: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except (ConfigError, StoreMissingError, UserFacingError) as exc:
        click.echo(f"fraudstream: error: {exc}", err=True)
        return 2 if isinstance(exc, ConfigError) else 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `fraudstream ... | head`: the reader has gone, which is fine
        _silence_stdout()
        return 0
    except Exception as exc:  # last resort: one line for the user, the traceback in the log
        from fraudstream.cli.logs import FILE_ONLY

        logger.error("unexpected failure", exc_info=True, extra=FILE_ONLY)
        click.echo(f"fraudstream: error: {first_line(exc)} (details in the log)", err=True)
        return 1
    return 0


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's final flush does not fail again at exit."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def first_line(exc: BaseException) -> str:
    """One line for the user: for a failed Flink job, the innermost error, preferring the
    Python exception raised inside a user function over the Java wrappers around it."""
    text = str(exc).strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines()]
    errors = [line for line in lines if _ERROR_LINE.match(line)]
    python_errors = [line for line in errors if not line.startswith(("java.", "org.", "py4j."))]
    causes = [line.removeprefix("Caused by:").strip() for line in lines if line.startswith("Caused by:")]
    best = (python_errors or causes or errors or lines)[-1]
    return best[:300]


_ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?\w*(?:Error|Exception|Interrupt): \S")


def entry() -> None:
    """Console-script entry point. Every file and folder this process and the JVMs it starts
    create (the data directory, the store, app.log, the archive, checkpoints, the broker's
    settings) is its owner's alone: they hold personal data and passwords."""
    import os

    os.umask(0o077)
    sys.exit(main())
