"""What reaches the console: the project's own warnings, not third-party logging (no Flink needed)."""

from __future__ import annotations

import logging
import os

from fraudstream.cli.logs import FILE_ONLY, configure_logging, for_console
from fraudstream.config import Settings


def _record(name: str, level: int = logging.WARNING, **extra) -> logging.LogRecord:
    record = logging.LogRecord(name, level, __file__, 1, "message", None, None)
    record.__dict__.update(extra)
    return record


def test_the_console_shows_only_the_projects_own_records():
    assert for_console(_record("fraudstream"))
    assert for_console(_record("fraudstream.cli.runner"))
    assert not for_console(_record("fraudstream.cli.runner", **FILE_ONLY))
    for third_party in ("py4j.clientserver", "apache_beam.runners", "py.warnings", "fraudstreamer", "root"):
        assert not for_console(_record(third_party)), third_party


def test_third_party_records_go_to_app_log_only(tmp_path, capsys):
    settings = Settings(data_dir=tmp_path)
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        configure_logging(settings)
        logging.getLogger("py4j.clientserver").error("py4j noise")
        logging.getLogger("fraudstream.test").warning("ours")
        for handler in root.handlers:
            handler.flush()
        err = capsys.readouterr().err
        assert "ours" in err and "py4j noise" not in err
        log = settings.log_file.read_text()
        assert "py4j noise" in log and "ours" in log
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        logging.captureWarnings(False)


def test_flink_jvm_logs_to_its_file_and_never_to_the_console():
    from fraudstream.flink.gateway import LOG4J_PROPERTIES

    text = LOG4J_PROPERTIES.read_text()
    settings = [line.split("=", 1)[0].strip() for line in text.splitlines() if line.strip() and line[0] != "#"]
    appenders = {s.split(".")[1] for s in settings if s.startswith("appender.")}
    assert appenders == {"main"}
    assert "appender.main.fileName = ${sys:log.file}" in text
    assert not [s for s in settings if "console" in s.lower()]
    assert "logger.hadoop.level = INFO" in text  # the CodecPool line: still logged, to the file


def test_the_gateway_is_started_with_the_projects_log4j_file(monkeypatch):
    import pyflink.java_gateway

    from fraudstream.flink import gateway

    seen = []
    monkeypatch.delenv("LOG4J_PROPERTIES", raising=False)
    monkeypatch.setattr(pyflink.java_gateway, "get_gateway", lambda: seen.append(os.environ.get("LOG4J_PROPERTIES")))
    gateway.start_gateway()
    assert seen == [str(gateway.LOG4J_PROPERTIES)]
    assert "LOG4J_PROPERTIES" not in os.environ  # set for the launch only
    monkeypatch.setenv("LOG4J_PROPERTIES", "/elsewhere/log4j2.properties")
    gateway.start_gateway()
    assert seen[-1] == "/elsewhere/log4j2.properties"  # a user's choice is kept
