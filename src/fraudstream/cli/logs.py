"""Logging is configured once, here, at the entry point.

The console shows what the project means to show: warnings and errors of its own loggers
(`fraudstream.*`). Everything else, third-party records (py4j, Apache Beam, Python
warnings) included, goes to app.log only; Flink's JVM logs to its own file under
<data-dir>/flink-logs (see fraudstream/flink/log4j2.properties).

Messages carry data (ids, records, errors quoting them): each record's text has its control
characters escaped, and a line break in it (a Java stack trace, a traceback) starts an indented
continuation line. So every line of app.log that does not start with a space is the start of a
record, which no message can forge.
"""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler

from fraudstream.config import Settings
from fraudstream.events.text import escape_controls

ALERT_LOGGER = "fraudstream.alerts"
# `logger.error(..., extra=FILE_ONLY)`: details for app.log that the console, which has
# already shown the user one line, should not repeat (tracebacks, full Java errors).
FILE_ONLY = {"file_only": True}
_OURS = "fraudstream"


class EscapingFormatter(logging.Formatter):
    """A formatter whose output holds no control character but line breaks, each one indented."""

    def format(self, record: logging.LogRecord) -> str:
        lines = super().format(record).split("\n")
        return "\n  ".join(escape_controls(line) for line in lines)


def for_console(record: logging.LogRecord) -> bool:
    """Whether a record belongs on the console: the project's own, not marked file-only."""
    ours = record.name == _OURS or record.name.startswith(_OURS + ".")
    return ours and not getattr(record, "file_only", False)


def configure_logging(settings: Settings, to_file: bool = True) -> None:
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    # Our level is set on our own logger: importing Flink's Python side (Apache Beam)
    # resets the root logger's level, which would silently mute app.log.
    logging.getLogger("fraudstream").setLevel(settings.logging.level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    console = logging.StreamHandler()
    console.setLevel(logging.WARNING)
    console.setFormatter(EscapingFormatter("%(levelname)s %(name)s: %(message)s"))
    console.addFilter(for_console)
    root.addHandler(console)
    if to_file:
        path = settings.log_file
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(
            path,
            maxBytes=settings.logging.max_bytes,
            backupCount=settings.logging.backup_count,
            encoding="utf-8",
        )
        handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    # librdkafka reports every refused connection; keep those in app.log, off the console.
    rdkafka = logging.getLogger("fraudstream.kafka.librdkafka")
    rdkafka.propagate = False
    rdkafka.handlers = [logging.NullHandler()]
    if to_file:
        rdkafka.addHandler(handler)
    for noisy in ("py4j", "apache_beam"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.captureWarnings(True)  # Python warnings become records of "py.warnings": app.log only
