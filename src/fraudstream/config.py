"""One typed, immutable settings object built at start-up and passed down.

Precedence, lowest to highest: built-in defaults, a TOML file (`--config`), environment
variables (`FRAUDSTREAM_<SECTION>__<KEY>`, e.g. `FRAUDSTREAM_DETECTORS__VELOCITY_THRESHOLD=5`,
plus `FRAUDSTREAM_DATA_DIR` and `FRAUDSTREAM_CONFIG`), then command-line flags.
"""

from __future__ import annotations

import json
import os
import random
import re
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_PREFIX = "FRAUDSTREAM_"
CONFIG_ENV = "FRAUDSTREAM_CONFIG"
PROFILE_ENV = "FRAUDSTREAM_PROFILE"

# Named sets of rule settings, laid over the defaults before a file, the environment or flags.
# "default" is the built-in defaults (tuned on the generator's default mix); "seed" the
# thresholds of the replaced system, kept for comparison.
PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    "seed": {
        "detectors.velocity_threshold": 3,
        "detectors.velocity_window_ms": 300_000,
        "detectors.device_sharing_threshold": 3,
        "detectors.device_sharing_window_ms": 3_600_000,
        "detectors.high_value_threshold": 1500.0,
        "detectors.geo_window_ms": 600_000,
        "detectors.dedup_cooldown_ms": 300_000,
    },
}


class ConfigError(ValueError):
    """A configuration problem worth one readable line to the user."""


def _json_object(value: Any, example: str) -> Any:
    """`--set` and environment variables give text: a table-valued setting takes a JSON object there."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"expected a JSON object such as {example}") from None
    return value


def _json_list(value: Any) -> Any:
    """`--set` and the environment give text: a list setting takes a comma-separated value or a
    JSON array there."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                raise ValueError('expected a JSON array such as ["a", "b"]') from None
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


# Addresses that mean "every interface" to a listener; this machine's own clients reach such a
# listener on loopback.
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def reach_from_here(host: str) -> str:
    """Where a client on this machine reaches a listener bound to `host`: a wildcard binds
    loopback too; any other address is the only one that answers."""
    return "127.0.0.1" if host in WILDCARD_HOSTS else host


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Severity = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]


class DetectorSettings(_Section):
    velocity_threshold: int = Field(3, ge=0, description="alert when a user has MORE than this many orders")
    velocity_window_ms: int = Field(300_000, gt=0)
    device_sharing_threshold: int = Field(2, ge=0, description="alert when MORE users share a device")
    device_sharing_window_ms: int = Field(1_800_000, gt=0)
    high_value_threshold: float = Field(1500.0, ge=0, description="alert when amount is above this (INR)")
    geo_window_ms: int = Field(1_800_000, gt=0)
    dedup_cooldown_ms: int = Field(300_000, ge=0, description="the cooldown of every rule without its own")
    # Each rule's switch, severity and cooldown (None: dedup_cooldown_ms). Live rule changes
    # (`fraudstream rules set`, docs/rules.md) change these, thresholds and windows in a running job.
    velocity_enabled: bool = True
    velocity_severity: Severity = "HIGH"
    velocity_cooldown_ms: int | None = Field(None, ge=0)
    device_sharing_enabled: bool = True
    device_sharing_severity: Severity = "CRITICAL"
    device_sharing_cooldown_ms: int | None = Field(None, ge=0)
    high_value_enabled: bool = True
    high_value_severity: Severity = "MEDIUM"
    high_value_cooldown_ms: int | None = Field(None, ge=0)
    geo_enabled: bool = True
    geo_severity: Severity = "HIGH"
    geo_cooldown_ms: int | None = Field(None, ge=0)
    detail_list_max: int = Field(
        20,
        ge=1,
        le=200,
        description="an alert's details list at most this many users or cities (the newest; the total is counted): "
        "an alert stays one small Kafka record however many accounts share a device",
    )

    def cooldown_of(self, rule: str) -> int:
        """The cooldown of `rule` (velocity, device_sharing, high_value, geo)."""
        own = getattr(self, f"{rule}_cooldown_ms")
        return self.dedup_cooldown_ms if own is None else own


class RulesSettings(_Section):
    """Live rule changes: the control topic, how far a window may be widened in a running job
    (state is kept for that long), and what `fraudstream rules set` tries first (docs/rules.md)."""

    live: Literal["auto", "on", "off"] = Field(
        "auto",
        description="follow the rules topic in the running job (docs/rules.md): auto = the sql engine on an "
        "--source kafka (a bounded run reads it up to its end at the start); on = whatever the source, other engines "
        "refused; off = the settings' rules only",
    )
    topic: str = Field("zomato_fraud_rules", description="the compacted topic of rule versions (key: the version)")
    velocity_max_window_ms: int = Field(3_600_000, gt=0, description="velocity.window_ms can be widened up to this")
    device_sharing_max_window_ms: int = Field(
        7_200_000, gt=0, description="device_sharing.window_ms can be widened up to this"
    )
    geo_max_window_ms: int = Field(7_200_000, gt=0, description="geo.window_ms can be widened up to this")
    min_takeover_risk: float = Field(
        0.5, ge=0, le=1, description="model.takeover_risk can be lowered down to this (orders this risky are explained)"
    )
    author: str | None = Field(None, description="who `rules set` says made a change [the OS user]")
    backtest_hours: float = Field(
        2.0, ge=0, description="`rules set` backtests a change on this many of the archive's last hours (0 = none)"
    )

    def max_window_of(self, rule: str) -> int:
        return int(getattr(self, f"{rule}_max_window_ms"))


# The steps of the job whose parallelism can be set on their own (pipeline.step_parallelism):
# the re-delivery check, the features, the rules, the cooldown, the alerts' text (Python), the sinks.
STEPS = ("redelivery", "features", "rules", "cooldown", "alert-text", "sinks")


class PipelineSettings(_Section):
    source: str = Field("generator", description="'generator', 'file:PATH' or 'kafka'")
    out_of_orderness_ms: int = Field(5_000, ge=0)
    parallelism: int = Field(1, ge=1)
    execution_mode: Literal["thread", "process"] = "thread"
    engine: Literal["sql", "datastream", "reference"] = Field(
        "sql",
        description="'sql': parsing and the four rules run in the JVM (Flink SQL); "
        "'datastream': every rule in Python operators (home of Python-only detectors); "
        "'reference': the replaced system's layout, a benchmark baseline only",
    )
    max_record_bytes: int = Field(65_536, gt=0)
    max_future_ms: int = Field(
        300_000,
        ge=0,
        description="orders from Kafka or a file stamped further ahead of the wall clock are `future` dead letters, "
        "and no reader's newest event time runs past the clock plus this (0 = no limit: synthetic future-dated input)",
    )
    verbose: bool = False
    max_parallelism: int = Field(
        128,
        ge=1,
        le=32_768,
        description="key groups of every keyed step: the most a restored job can be rescaled to; fixed by a "
        "job's first run (Flink's default, 128, is what earlier runs used), so never change it for a running job",
    )
    step_parallelism: dict[str, int] = Field(
        default_factory=dict,
        description="parallelism of single steps, overriding `parallelism` (steps: "
        + ", ".join(STEPS)
        + "); the sources always run one reader per raw-topic partition",
    )
    rest_port: int = Field(0, ge=0, le=65535, description="REST port of the local job (savepoints); 0 = any free port")
    buffer_timeout_ms: int | None = Field(
        None,
        ge=0,
        description="longest a record waits in a network buffer between steps; unset = 5, or 100 in a bounded "
        "Kafka run with kafka.delivery=exactly-once (a replay: fuller buffers, more throughput)",
    )
    watermark_interval_ms: int | None = Field(
        None,
        gt=0,
        description="how often sources emit watermarks; unset = 50, or 200 in a bounded Kafka run with "
        "kafka.delivery=exactly-once",
    )
    jvm_options: str = Field(
        "-XX:+UseParallelGC -Xmx1g",
        description="options of the local job's JVM (PyFlink's gateway, which runs the mini-cluster): the "
        "throughput collector, measured faster than G1 for this job, and a heap sized for it rather than a "
        "quarter of the machine (docs/performance.md); raise -Xmx for millions of keys. A cluster's "
        "TaskManagers have their own",
    )
    bind_host: str = Field(
        "127.0.0.1",
        description="address the local job's servers listen on (Flink's BLOB, data and REST servers, "
        "the Python workers' gRPC pool); 0.0.0.0 opens them to other machines",
    )

    @field_validator("step_parallelism", mode="before")
    @classmethod
    def _steps_from_text(cls, value: Any) -> Any:
        return _json_object(value, '{"rules": 4, "sinks": 2}')

    @field_validator("step_parallelism")
    @classmethod
    def _known_steps(cls, value: dict[str, int]) -> dict[str, int]:
        for step, n in value.items():
            if step not in STEPS:
                raise ValueError(f"unknown step '{step}': use {', '.join(STEPS)}")
            if not isinstance(n, int) or n < 1:
                raise ValueError(f"the parallelism of '{step}' must be a whole number >= 1")
        return value

    @model_validator(mode="after")
    def _within_max_parallelism(self) -> PipelineSettings:
        top = max([self.parallelism, *self.step_parallelism.values()])
        if top > self.max_parallelism:
            raise ValueError(f"parallelism {top} exceeds pipeline.max_parallelism ({self.max_parallelism})")
        return self

    def parallelism_of(self, step: str) -> int:
        """The parallelism of one step of the job (see STEPS)."""
        assert step in STEPS, step
        return self.step_parallelism.get(step, self.parallelism)

    @property
    def reach_host(self) -> str:
        """Where this machine's own clients (savepoint, the run's failure watch) reach the job:
        a wildcard binds loopback too; any other address is the only one that answers."""
        return reach_from_here(self.bind_host)


class CheckpointSettings(_Section):
    """How the job keeps its place and its state, so a crash or a stop loses nothing."""

    interval_ms: int = Field(
        250,
        ge=100,
        description="how often state, Kafka positions and transactions are checkpointed while the job reads live "
        "orders; exactly-once alerts become readable at this pace",
    )
    backlog_interval_ms: int = Field(
        3_000,
        ge=100,
        description="the interval while a source reads a backlog (a bounded run, a replay of what is already in the "
        "topic): fewer snapshots, more throughput; never less than interval_ms",
    )
    timeout_ms: int = Field(60_000, gt=0, description="a checkpoint slower than this is abandoned")
    dir: str | None = Field(None, description="any Flink filesystem URI or a path; unset = <data_dir>/checkpoints")
    savepoint_dir: str | None = Field(None, description="unset = <data_dir>/savepoints")
    retained: int = Field(3, ge=1, description="completed checkpoints kept (the newest is resumed)")
    state_backend: Literal["hashmap", "rocksdb"] = Field(
        "hashmap",
        description="where keyed state lives: the JVM heap, or RocksDB on local disk (incremental checkpoints)",
    )
    restart_initial_backoff_ms: int = Field(1_000, gt=0, description="first wait before restarting a failed job")
    restart_max_backoff_ms: int = Field(30_000, gt=0, description="the wait doubles up to this")
    restart_attempts: int = Field(
        10, ge=0, description="restarts in a row (without an hour of calm between) before the run fails"
    )

    @property
    def longest_interval_ms(self) -> int:
        """The interval over a backlog (backlog_interval_ms, never less than interval_ms): the
        most one checkpoint may follow another by, what a Kafka transaction must outlive."""
        return max(self.interval_ms, self.backlog_interval_ms)


# The fraud patterns the generator plays and their default shares among fraud episodes.
DEFAULT_PATTERN_SHARES: dict[str, float] = {
    "velocity_burst": 0.2,
    "account_farm": 0.2,
    "high_value": 0.2,
    "city_hopping": 0.2,
    "account_takeover": 0.1,
    "promo_abuse": 0.1,
}


class GeneratorSettings(_Section):
    seed: int | None = Field(None, description="fixes the stream; unset = a new stream each run")
    count: int | None = Field(None, ge=0, description="events to generate; unset = until stopped")
    rate: float = Field(50.0, ge=0, description="events per second of wall clock; 0 = as fast as possible")
    fraud_ratio: float = Field(0.2, ge=0, le=1)
    users: int = Field(20_000, ge=1, description="normal users in the population")
    start_time: str | None = Field(
        None, description="ISO-8601 start of event time; unset = now, or 2026-01-01T00:00:00Z with a seed"
    )
    mean_gap_ms: int = Field(250, ge=0, description="mean event-time gap between orders")
    jitter_ms: int = Field(0, ge=0, description="bounded out-of-order jitter of event times")
    pattern_shares: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_PATTERN_SHARES),
        description="relative share of each fraud pattern among fraud episodes (absent or 0 turns one off)",
    )

    @field_validator("pattern_shares", mode="before")
    @classmethod
    def _shares(cls, value: Any) -> Any:
        value = _json_object(value, '{"velocity_burst": 2, "high_value": 1}')
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(DEFAULT_PATTERN_SHARES))
            if unknown:
                raise ValueError(f"unknown pattern(s) {', '.join(unknown)}: use {', '.join(DEFAULT_PATTERN_SHARES)}")
            if any(not isinstance(v, int | float) or v < 0 for v in value.values()):
                raise ValueError("shares must be numbers >= 0")
            if not any(value.values()):
                raise ValueError("at least one pattern needs a share above 0")
        return value


class StoreSettings(_Section):
    url: str | None = Field(
        None,
        description="a PostgreSQL database shared by a team, postgresql://USER[:PASSWORD]@HOST[:PORT]/DB "
        "(secret: prefer FRAUDSTREAM_STORE__URL or a ~/.pgpass file); unset = SQLite at db_path",
    )
    db_path: Path | None = Field(None, description="unset = <data_dir>/fraud_alerts.db")
    batch_size: int = Field(100, ge=1)
    flush_interval_ms: int = Field(500, ge=1)
    dead_letter_max_chars: int = Field(4_096, ge=64)
    busy_timeout_ms: int = Field(
        2_000, ge=0, description="wait this long for a lock before a write fails and is retried"
    )
    retry_max_backoff_ms: int = Field(
        10_000, gt=0, description="failed writes are retried, waiting up to this between tries"
    )
    server_port: int = Field(
        5433, ge=1, le=65535, description="port of the local server of 'fraudstream store postgres start'"
    )
    server_host: str = Field("127.0.0.1", description="address the local server of 'store postgres start' binds")

    @field_validator("url")
    @classmethod
    def _postgresql_url(cls, value: str | None) -> str | None:
        if value == "":  # `--set store.url=` unsets a file's URL: back to SQLite
            return None
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql://USER@HOST:PORT/DB URL (unset for SQLite)")
        return value


class ArchiveSettings(_Section):
    """The raw-event archive: every valid order as received, and every dead letter, in Parquet."""

    enabled: bool = Field(True, description="write the archive (the sql and datastream engines)")
    path: str | None = Field(
        None, description="any Flink filesystem URI or a path; unset = <data_dir>/archive (orders/ and dead_letters/)"
    )


class LoggingSettings(_Section):
    log_file: Path | None = Field(None, description="unset = <data_dir>/app.log")
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_bytes: int = Field(10_000_000, ge=1_000)
    backup_count: int = Field(5, ge=0)


class KafkaSettings(_Section):
    """Where the job and the tools find Kafka, and how the job reads it."""

    bootstrap_servers: str = "127.0.0.1:9092"
    raw_topic: str = "zomato_transactions_raw"
    alerts_topic: str = "zomato_fraud_alerts"
    dead_letter_topic: str = "zomato_transactions_dlq"
    raw_partitions: int = Field(4, ge=1, description="partitions of the raw topic when we create it")
    group_id: str = "fraudstream-detector"
    start_from: Literal["earliest", "latest", "committed"] = Field(
        "committed", description="where a run starts; 'committed' falls back to earliest for a new group"
    )
    bounded: bool = Field(False, description="stop at the offsets that were latest when the job started")
    idle_timeout_ms: int = Field(
        60_000, gt=0, description="a partition silent this long stops holding back time (keep above outages)"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_ca_location: Path | None = Field(None, description="PEM file of the CA that signed the brokers")
    connect_timeout_s: float = Field(20.0, gt=0, description="how long tools retry an unreachable broker")
    transactional_id_prefix: str | None = Field(
        None, description="prefix of the alert sinks' Kafka transactions; unset = the group id (one per job)"
    )
    transaction_timeout_ms: int = Field(
        600_000, gt=0, description="must exceed checkpoint interval + timeout and be within the broker's maximum"
    )
    delivery: Literal["exactly-once", "at-least-once"] = Field(
        "exactly-once",
        description="the alert and dead-letter sinks: 'exactly-once' (transactions, visible at each checkpoint) or "
        "'at-least-once' (visible at once; a restart may write a record again: the store keeps each once by id)",
    )


_SAFE_CREDENTIAL = re.compile(r"[A-Za-z0-9._@+-]+")


class BrokerSettings(_Section):
    """The single-node broker `fraudstream kafka start` runs for development and tests."""

    host: str = "127.0.0.1"
    port: int = Field(9092, ge=1, le=65535)
    controller_port: int = Field(9093, ge=1, le=65535)
    heap: str = Field("512m", description="JVM heap of the broker")
    sasl_users: dict[str, str] = Field(
        default_factory=dict,
        description="user -> password: clients must log in (SASL/PLAIN), to rehearse a managed Kafka",
    )
    jars_dir: Path | None = Field(None, description="unset = <checkout>/jvm/lib (filled by 'make jars')")
    start_timeout_s: float = Field(60.0, gt=0)

    @field_validator("sasl_users", mode="before")
    @classmethod
    def _json_from_text(cls, value: Any) -> Any:
        value = _json_object(value, '{"user": "password"}')
        if isinstance(value, dict):
            for text in (*value.keys(), *value.values()):
                # they are written into the broker's JAAS line, which has its own quoting
                if not isinstance(text, str) or not _SAFE_CREDENTIAL.fullmatch(text):
                    raise ValueError("user names and passwords may use letters, digits and . _ - @ + only")
        return value


class DashboardSettings(_Section):
    """`fraudstream dashboard`: the analysts' web page (alerts, triage, pipeline health)."""

    host: str = Field("127.0.0.1", description="address to listen on; any other than loopback requires a token")
    port: int = Field(8050, ge=0, le=65535, description="0 = any free port (printed at start)")
    token: str | None = Field(
        None, description="access token every request must carry when the dashboard listens beyond loopback (secret)"
    )
    public_url: str | None = Field(
        None, description="the dashboard's address as analysts reach it, for links in notifications; unset = host:port"
    )
    push_interval_ms: int = Field(500, ge=50, description="how often the server looks for new alerts to push")
    page_size: int = Field(50, ge=1, le=500, description="alerts per page of the search")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="more names the page may be reached by (a proxy's), beside loopback, host and public_url's host",
    )
    max_sse_clients: int = Field(64, ge=1, description="live-feed connections at once; more are refused with 503")
    rules_token: str | None = Field(
        None,
        description="token an analyst gives to propose and publish a rule change from the page; unset = proposing "
        "is disabled (secret)",
    )

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _hosts_from_text(cls, value: Any) -> Any:
        return _json_list(value)

    @property
    def url(self) -> str:
        """Where notifications link to (the configured public URL, else the listening address)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = reach_from_here(self.host)
        if ":" in host and not host.startswith("["):  # an IPv6 address goes in brackets in a URL
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


class NotifySettings(_Section):
    """Messages about committed alerts to chat and email, sent beside the job (never inside it)."""

    severities: list[Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]] = Field(
        default_factory=lambda: ["CRITICAL"], description="alert severities that are notified"
    )
    webhook_url: str | None = Field(
        None, description="a Slack-compatible incoming webhook (https://hooks.slack.com/...); secret"
    )
    urls: list[str] = Field(
        default_factory=list, description="more receivers as apprise URLs (https://github.com/caronc/apprise); secret"
    )
    smtp_host: str | None = Field(None, description="SMTP server for email; unset = no email")
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_starttls: bool = Field(True, description="upgrade the connection with STARTTLS before logging in")
    smtp_username: str | None = None
    smtp_password: str | None = Field(None, description="secret: prefer FRAUDSTREAM_NOTIFY__SMTP_PASSWORD")
    email_from: str | None = None
    email_to: list[str] = Field(default_factory=list)
    burst_window_ms: int = Field(60_000, gt=0, description="messages are counted per receiver over this window")
    burst_max: int = Field(
        5, ge=1, description="messages per window; alerts beyond it are summarised in one message at the window's end"
    )
    timeout_s: float = Field(10.0, gt=0, description="a receiver slower than this has failed")
    retry_max_backoff_ms: int = Field(60_000, gt=0, description="a failed receiver is retried, waiting up to this")
    max_attempts: int = Field(
        10, ge=1, description="a message a receiver refused this many times is recorded as dropped and skipped"
    )
    tls_verify: bool = Field(
        True, description="check the webhook's and the SMTP server's TLS certificates (off: a test server only)"
    )

    @field_validator("urls", "email_to", "severities", mode="before")
    @classmethod
    def _list_from_text(cls, value: Any) -> Any:
        return _json_list(value)

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url or self.urls or self.smtp_host)


class MetricsSettings(_Section):
    """Prometheus metrics: the job's (Flink's reporter) and this process's (copier, notifications)."""

    enabled: bool = Field(True, description="expose metrics for Prometheus to scrape")
    host: str = Field("127.0.0.1", description="address the metrics endpoints listen on")
    job_port: str = Field("9249-9258", description="port or range of the job's Flink Prometheus reporter")
    process_port: int = Field(
        9259, ge=0, le=65535, description="port of this process's own metrics (copier, notifications); 0 = any free"
    )


class FeatureSettings(_Section):
    """Bounds on the behavioural features' state (fraudstream.features; docs/model.md). The
    windows stop at ten years, so the JVM's `last time + window + 1` cannot overflow a long."""

    history_ms: int = Field(
        30 * 86_400_000, gt=0, le=3650 * 86_400_000, description="a user silent this long starts a new history"
    )
    recent_ms: int = Field(3_600_000, gt=0, le=3650 * 86_400_000, description="the window of orders_last_hour")
    recent_max: int = Field(64, ge=1, le=10_000, description="order times kept for orders_last_hour")
    max_devices: int = Field(8, ge=1, le=1_000, description="devices remembered per user (least recent evicted)")
    max_cities: int = Field(8, ge=1, le=1_000, description="cities remembered per user (least recent evicted)")
    device_window_ms: int = Field(86_400_000, gt=0, le=3650 * 86_400_000, description="the window of device_users_24h")
    device_users_max: int = Field(32, ge=1, le=10_000, description="users remembered per device")


class ModelSettings(_Section):
    """The learned risk model (`fraudstream train`; docs/model.md). Unset path = rules only."""

    path: Path | None = Field(None, description="a model file written by 'fraudstream train'; unset = no model")
    takeover_risk: float = Field(0.9, ge=0, le=1, description="an order at or above this risk raises ACCOUNT_TAKEOVER")
    high_risk: float = Field(0.97, ge=0, le=1, description="ACCOUNT_TAKEOVER is HIGH from this risk")
    critical_risk: float = Field(0.995, ge=0, le=1, description="ACCOUNT_TAKEOVER is CRITICAL from this risk")
    explain_top: int = Field(3, ge=1, le=20, description="features named in an alert as the ones that raised its risk")
    batch_size: int = Field(512, ge=1, le=65_536, description="orders scored in one call of the model (the JVM)")

    @model_validator(mode="after")
    def _bands_in_order(self) -> ModelSettings:
        if not self.takeover_risk <= self.high_risk <= self.critical_risk:
            raise ValueError("model.takeover_risk <= model.high_risk <= model.critical_risk must hold")
        return self


class ClusterSettings(_Section):
    """Where the job runs: Flink's embedded mini-cluster (the default), or a Flink cluster,
    and the local standalone cluster `fraudstream cluster start` runs on this machine."""

    jobmanager: str | None = Field(
        None,
        description="HOST:PORT of a Flink 2.2 cluster's REST endpoint to submit the job to; "
        "unset = the embedded mini-cluster",
    )
    python: str | None = Field(
        None,
        description="the Python the cluster's workers run (python.executable; it has apache-flink installed); "
        "unset = this interpreter, right for `fraudstream cluster start` on this machine",
    )
    python_path: str | None = Field(
        None,
        description="the site-packages of that Python, for thread mode (python.pythonpath); unset = this "
        "interpreter's, right for `fraudstream cluster start`",
    )
    # The local standalone cluster (`fraudstream cluster start`).
    dir: Path | None = Field(None, description="its configuration, logs and pid files; unset = <data_dir>/cluster")
    host: str = Field("127.0.0.1", description="address its JobManager and TaskManagers listen on")
    rest_port: int = Field(8081, ge=1, le=65535, description="its REST endpoint and web UI")
    taskmanagers: int = Field(1, ge=1, le=16, description="TaskManagers started by `cluster start`")
    slots: int = Field(2, ge=1, le=64, description="task slots per TaskManager")
    jobmanager_memory: str = Field("1024m", description="jobmanager.memory.process.size")
    taskmanager_memory: str = Field("1536m", description="taskmanager.memory.process.size")
    start_timeout_s: float = Field(90.0, gt=0, description="how long `cluster start` waits for the TaskManagers")

    @field_validator("jobmanager")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, sep, port = value.removeprefix("http://").rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be HOST:PORT (the cluster's REST endpoint, e.g. 127.0.0.1:8081)")
        return f"{host}:{port}"


class AlertSettings(_Section):
    """What happens to rule alerts once a model scores their orders."""

    min_risk: float = Field(
        0.5,  # chosen by `fraudstream model evaluate`'s sweep (docs/model.md, "min_risk")
        ge=0,
        le=1,
        description="a rule alert whose order's risk is below this is held back (stored and marked, "
        "not notified); 0 = none held back; no effect without a model",
    )


# Settings whose values are secrets (or carry them, as webhook and apprise URLs do): masked
# wherever settings are shown or logged.
SECRETS = (
    ("dashboard", "token"),
    ("dashboard", "rules_token"),
    ("notify", "webhook_url"),
    ("notify", "urls"),
    ("notify", "smtp_password"),
)


class Settings(_Section):
    data_dir: Path = Path("data")
    detectors: DetectorSettings = DetectorSettings()
    pipeline: PipelineSettings = PipelineSettings()
    checkpoint: CheckpointSettings = CheckpointSettings()
    generator: GeneratorSettings = GeneratorSettings()
    store: StoreSettings = StoreSettings()
    archive: ArchiveSettings = ArchiveSettings()
    logging: LoggingSettings = LoggingSettings()
    kafka: KafkaSettings = KafkaSettings()
    broker: BrokerSettings = BrokerSettings()
    dashboard: DashboardSettings = DashboardSettings()
    notify: NotifySettings = NotifySettings()
    metrics: MetricsSettings = MetricsSettings()
    features: FeatureSettings = FeatureSettings()
    model: ModelSettings = ModelSettings()
    alerts: AlertSettings = AlertSettings()
    cluster: ClusterSettings = ClusterSettings()
    rules: RulesSettings = RulesSettings()

    @model_validator(mode="after")
    def _windows_within_their_maximum(self) -> Settings:
        """A live change can widen a window only as far as the job keeps state for."""
        d, r = self.detectors, self.rules
        for rule, window in (
            ("velocity", d.velocity_window_ms),
            ("device_sharing", d.device_sharing_window_ms),
            ("geo", d.geo_window_ms),
        ):
            if window > r.max_window_of(rule):
                raise ValueError(
                    f"detectors.{rule}_window_ms ({window}) must not exceed rules.{rule}_max_window_ms "
                    f"({r.max_window_of(rule)})"
                )
        return self

    @model_validator(mode="after")
    def _transactions_outlive_checkpoints(self) -> Settings:
        """A Kafka transaction stays open from one checkpoint to the next (longer if a checkpoint
        is slow); if the broker times it out first, its alerts are lost. (At least once, the
        sinks open no transactions.)"""
        c = self.checkpoint
        transactional = self.kafka.delivery == "exactly-once"
        if transactional and self.kafka.transaction_timeout_ms <= c.longest_interval_ms + c.timeout_ms:
            raise ValueError(
                f"kafka.transaction_timeout_ms ({self.kafka.transaction_timeout_ms}) must exceed "
                f"the longer checkpoint interval + checkpoint.timeout_ms ({c.longest_interval_ms + c.timeout_ms})"
            )
        return self

    @property
    def buffer_timeout_ms(self) -> int:
        """pipeline.buffer_timeout_ms, or the run's: flushing buffers often costs little at live loads
        and is what a live alert waits on; a replay over a backlog fills its buffers instead."""
        p = self.pipeline
        return p.buffer_timeout_ms if p.buffer_timeout_ms is not None else (5 if self._low_latency else 100)

    @property
    def watermark_interval_ms(self) -> int:
        p = self.pipeline
        return p.watermark_interval_ms if p.watermark_interval_ms is not None else (50 if self._low_latency else 200)

    @property
    def replays_backlog(self) -> bool:
        """A bounded Kafka run reads what is in the topic already, as fast as it can: nobody waits
        on each alert, so it favours throughput (checkpoint.backlog_interval_ms, fuller buffers)."""
        return self.pipeline.source == "kafka" and self.kafka.bounded

    @property
    def _low_latency(self) -> bool:
        return self.kafka.delivery == "at-least-once" or not self.replays_backlog

    @property
    def db_path(self) -> Path:
        return self.store.db_path or self.data_dir / "fraud_alerts.db"

    @property
    def checkpoint_uri(self) -> str:
        return _uri(self.checkpoint.dir, self.data_dir / "checkpoints")

    @property
    def savepoint_uri(self) -> str:
        return _uri(self.checkpoint.savepoint_dir, self.data_dir / "savepoints")

    @property
    def archive_uri(self) -> str:
        return _uri(self.archive.path, self.data_dir / "archive")

    @property
    def transactional_id_prefix(self) -> str:
        return self.kafka.transactional_id_prefix or self.kafka.group_id

    @property
    def log_file(self) -> Path:
        return self.logging.log_file or self.data_dir / "app.log"

    def redacted(self) -> dict[str, Any]:
        """The settings as JSON-ready data with passwords masked, for logs and `config show`."""
        data = self.model_dump(mode="json")
        if data["kafka"]["sasl_password"] is not None:
            data["kafka"]["sasl_password"] = "***"
        data["broker"]["sasl_users"] = dict.fromkeys(data["broker"]["sasl_users"], "***")
        if data["store"]["url"]:
            data["store"]["url"] = redact_url(data["store"]["url"])
        for section, key in SECRETS:
            if data[section][key]:
                data[section][key] = (
                    ["***"] * len(data[section][key]) if isinstance(data[section][key], list) else "***"
                )
        return data

    def with_overrides(self, overrides: Mapping[str, Any]) -> Settings:
        """A copy with dotted-key overrides (`{"generator.seed": 7}`), validated again."""
        data = self.model_dump()
        _apply_dotted(data, overrides)
        return _validate(data, "override")


def redact_url(url: str) -> str:
    """A URL with its passwords masked, for logs and screens: the user's (postgresql://user:***@host/db)
    and the query string's (`?password=***`, `?sslpassword=***`); a libpq key=value string's too.
    Never raises: a URL that does not parse is masked whole (`postgresql://***`), since where
    its password ends cannot be told."""
    secret = r"(?:ssl)?password"
    if "://" not in url:  # key=value (host=h password=x), or not a URL at all
        return re.sub(rf"(?i)\b({secret}\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", url)
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hostport = netloc.rpartition("@")
            netloc = f"{userinfo.partition(':')[0]}:***@{hostport}"
        query = re.sub(rf"(?i)(^|&)({secret}=)[^&]*", r"\1\2***", parts.query)
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        scheme = url.partition("://")[0]
        return f"{scheme}://***" if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme) else "***"


def _uri(configured: str | None, default: Path) -> str:
    """A Flink filesystem URI: given ones (s3://, hdfs://, file://) pass as they are, paths become file URIs."""
    if configured and "://" in configured:
        return configured
    return Path(configured or default).expanduser().resolve().as_uri()


def pin_generator(settings: Settings) -> Settings:
    """Fix a random seed and the start time now, so a run can be reproduced from its banner."""
    gen = settings.generator
    if gen.seed is not None:
        return settings
    start = gen.start_time or datetime.now(UTC).isoformat(timespec="milliseconds")
    seed = random.SystemRandom().randrange(2**31)
    return settings.with_overrides({"generator.seed": seed, "generator.start_time": start})


_RULES = {"velocity": "velocity", "device": "device_sharing", "device_sharing": "device_sharing",
          "high_value": "high_value", "geo": "geo", "dedup": "dedup"}  # fmt: skip


def rule_alias(dotted: str, value: Any) -> tuple[str, Any] | None:
    """Short names for the rules' settings: `velocity.threshold`, `geo.window_minutes`,
    `device_sharing.window_ms`, `dedup.cooldown_minutes` ... -> `detectors.<rule>_<key>`."""
    rule, sep, key = dotted.partition(".")
    if not sep or rule not in _RULES:
        return None
    name = _RULES[rule]
    for unit, factor in (("_minutes", 60_000), ("_ms", 1)):
        if key.endswith(unit) and key.removesuffix(unit) in ("window", "cooldown"):
            try:
                ms = round(float(value) * factor)
            except (TypeError, ValueError):
                return None
            return f"detectors.{name}_{key.removesuffix(unit)}_ms", ms
    if key == "threshold" or (key in ("enabled", "severity") and name != "dedup"):
        return f"detectors.{name}_{key}", value
    return None


def _apply_dotted(data: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    for dotted, value in overrides.items():
        if value is None:
            continue
        alias = rule_alias(dotted, value)
        if alias is not None:
            dotted, value = alias
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"unknown setting '{dotted}'")
            node = node[part]
        if leaf not in node:
            raise ConfigError(f"unknown setting '{dotted}'")
        node[leaf] = value


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> None:
    """A file's sections merge into the defaults key by key; a value that is itself a table
    (`generator.pattern_shares`, `broker.sasl_users`) replaces the default whole."""
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value


def _validate(data: Mapping[str, Any], origin: str) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        if not where:  # a rule across settings
            raise ConfigError(f"invalid settings ({origin}): {err['msg'].removeprefix('Value error, ')}") from None
        raise ConfigError(f"invalid setting '{where}' ({origin}): {err['msg']}") from None


def env_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """Dotted-key overrides from FRAUDSTREAM_* variables (values stay strings; pydantic converts)."""
    out: dict[str, str] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in (CONFIG_ENV, PROFILE_ENV):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        out[rest.replace("__", ".")] = value
    return out


def load_settings(
    config_file: Path | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    profile: str | None = None,
) -> Settings:
    environ = os.environ if environ is None else environ
    data = Settings().model_dump()
    profile = profile or environ.get(PROFILE_ENV)
    if profile:
        if profile not in PROFILES:
            raise ConfigError(f"unknown profile '{profile}': use {' or '.join(PROFILES)}")
        _apply_dotted(data, PROFILES[profile])
    if config_file is None and environ.get(CONFIG_ENV):
        config_file = Path(environ[CONFIG_ENV])
    if config_file is not None:
        try:
            with open(config_file, "rb") as fh:
                file_data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {config_file}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_file} is not valid TOML: {exc}") from None
        _merge(data, file_data)
        _validate(data, str(config_file))
    _apply_dotted(data, env_overrides(environ))
    _validate(data, "environment")
    _apply_dotted(data, dict(flags or {}))
    return _validate(data, "command line")


def parse_set_option(items: tuple[str, ...]) -> dict[str, str]:
    """`--set section.key=value` pairs into dotted overrides."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects section.key=value, got '{item}'")
        out[key.strip()] = value.strip()
    return out


def to_toml(data: Mapping[str, Any]) -> str:
    """Settings as `Settings.model_dump(mode="json")` gives them, as a TOML file `--config`
    reads back (unset values become comments)."""
    out = [f"data_dir = {_toml(data['data_dir'])}"]
    for section, values in data.items():
        if section == "data_dir":
            continue
        out.append(f"\n[{section}]")
        for key, value in values.items():
            out.append(f"{key} = {_toml(value)}" if value is not None else f"# {key} = (unset)")
    return "\n".join(out) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)
