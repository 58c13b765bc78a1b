"""Logging is configured once, here, at the entry point."""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler

from fraudstream.config import Settings

ALERT_LOGGER = "fraudstream.alerts"
# `logger.error(..., extra=FILE_ONLY)`: details for app.log that the console, which has
# already shown the user one line, should not repeat (tracebacks, full Java errors).
FILE_ONLY = {"file_only": True}


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
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    console.addFilter(lambda record: not getattr(record, "file_only", False))
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
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    # librdkafka reports every refused connection; keep those in app.log, off the console.
    rdkafka = logging.getLogger("fraudstream.kafka.librdkafka")
    rdkafka.propagate = False
    rdkafka.handlers = [logging.NullHandler()]
    if to_file:
        rdkafka.addHandler(handler)
    for noisy in ("py4j", "apache_beam"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
