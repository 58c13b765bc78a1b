"""What the security section of the docs promises, checked without Flink (docs/security.md)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from fraudstream.config import KafkaSettings, load_settings
from fraudstream.jars import archive_jars, kafka_classpath
from fraudstream.kafka.clients import java_properties

ROOT = Path(__file__).resolve().parents[1]


def test_no_vulnerable_snappy_java_on_the_jobs_classpath():
    """Flink ships snappy-java 1.1.10.7; the archive's jars must not bring 1.1.8 (known CVEs)."""
    names = [p.name for p in archive_jars(None)]
    assert names, "no archive jars: run 'make jars'"
    assert [n for n in names if n.startswith("snappy-java-")] == []
    assert sorted(p.name for p in (ROOT / "jvm" / "lib").rglob("snappy-java-1.1.8*.jar")) == []


def test_the_set_up_installs_the_pinned_versions():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\$\(STAMP\):.*\bconstraints\.txt\b", makefile, re.M), "a change must reinstall"
    assert re.search(r"pip install .*-c constraints\.txt .*-e '\.\[dev\]'", makefile)
    pins = {
        line.split("==")[0].lower().replace("_", "-"): line.split("==")[1]
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    names = [re.split(r"[<>=!~\[ ]", d, maxsplit=1)[0].lower().replace("_", "-") for d in wanted]
    assert [n for n in names if n not in pins] == []
    assert pins["apache-flink"] == "2.2.1"


_JAAS_READER = """
import org.apache.kafka.common.security.JaasContext;
import org.apache.kafka.common.config.types.Password;
import java.util.Map;
public class ReadJaas {
    public static void main(String[] args) {
        for (String jaas : args) {
            var ctx = JaasContext.loadClientContext(Map.of("sasl.jaas.config", new Password(jaas)));
            var options = ctx.configurationEntries().get(0).getOptions();
            System.out.print(options.get("username") + "\\0" + options.get("password") + "\\0");
        }
    }
}
"""
_PASSWORDS = ["back\\slash\\", 'a "quoted" one', "line\nbreak\r", "tab\there\x01\x7f5", '\\"', "\\n", "plain"]


def test_the_jobs_jaas_line_carries_any_password_to_kafkas_parser(tmp_path):
    """Kafka's own parser (kafka-clients, run by `java`) reads back exactly what we wrote."""
    lines = []
    for password in _PASSWORDS:
        k = KafkaSettings(
            security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username='us"er\\', sasl_password=password
        )
        lines.append(java_properties(k)["sasl.jaas.config"].replace("org.apache.flink.kafka.shaded.", ""))
    source = tmp_path / "ReadJaas.java"
    source.write_text(_JAAS_READER)
    result = subprocess.run(
        ["java", "-cp", kafka_classpath(None), str(source), *lines], capture_output=True, timeout=60
    )  # bytes: text mode would turn a \r into \n
    assert result.returncode == 0, result.stderr[-1500:]
    read = result.stdout.decode().split("\0")[:-1]
    assert list(zip(read[::2], read[1::2], strict=True)) == [('us"er\\', p) for p in _PASSWORDS]


def test_a_backtest_writes_its_settings_without_passwords(tmp_path, monkeypatch):
    """The replay's settings.toml stays behind in the work folder: no password in it."""
    from fraudstream.backtest import replay

    settings = load_settings(
        flags={
            "kafka.sasl_password": "hunter2",
            "kafka.sasl_username": "fraud",
            "broker.sasl_users": '{"fraud": "s3cret"}',
            "data_dir": str(tmp_path / "data"),
        },
        environ={},
    )
    events = tmp_path / "events.jsonl"
    events.write_text("")
    # the replay's child process, which would run the Flink job, is `true` here
    monkeypatch.setattr(sys, "executable", "/bin/true")
    replay.run_replay("champion", settings, events, tmp_path / "work", echo=lambda _line: None)
    text = (tmp_path / "work" / "champion" / "settings.toml").read_text()
    assert "hunter2" not in text and "s3cret" not in text
    assert "fraud" in text  # the user name is no secret
    # and it still loads: the replay's process reads it
    load_settings(tmp_path / "work" / "champion" / "settings.toml", environ={})


class _Recorded:
    """Stands in for Flink's Configuration: what was set, by key."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def set_string(self, key: str, value: str) -> None:
        self.values[key] = value


@pytest.mark.parametrize(
    ("host", "reach"), [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("10.1.2.3", "10.1.2.3")]
)
def test_the_jobs_servers_bind_the_configured_host(host, reach):
    from fraudstream.flink.network import configure_network

    conf = _Recorded()
    configure_network(conf, load_settings(flags={"pipeline.bind_host": host}, environ={}))  # type: ignore[arg-type]
    binds = ("jobmanager.bind-host", "taskmanager.bind-host", "rest.bind-address")
    assert {k: conf.values[k] for k in binds} == dict.fromkeys(binds, host)
    assert conf.values["jobmanager.rpc.address"] == conf.values["taskmanager.host"] == reach
    assert conf.values["web.access-control-allow-origin"] == ""
    configure_network(_Recorded(), load_settings(environ={}))  # type: ignore[arg-type]  # back to the default
