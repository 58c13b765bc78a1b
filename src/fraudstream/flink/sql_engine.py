"""The sql engine: parsing, event time and the rules run inside the JVM.

    raw bytes -> OrderAdmission (Java: parse, validate, late?) -> event time + watermarks
      without a model (the default):
      -> UserStep (keyed by user: re-deliveries and orders behind the combined watermark, then
         velocity, high value and geo, in one pass) -> its admitted orders -> DeviceRules (keyed by device)
      with a model:
      -> Redelivery (keyed by user) -> DeviceFeatures -> UserFeatures -> RiskScorer
      -> UserRules (keyed by user: the same rules and takeover) | DeviceRules (keyed by device)
      each under the rules version in force at the order's event time (broadcast from the Stamper)
      -> rule candidates (a few per cent of the orders) -> Cooldown (Java, per version's cooldown)
      -> Python: the alert's text and details, for the alerts that pass

Python operators cost a JVM-to-Python crossing and a pickle per record; here only the rules'
candidates (and the rare rules-topic message) cross. The rule steps (jvm/src/.../rules) implement
the same definitions as the Python detectors (`fraudstream.detectors`), in event time:

- velocity: the user's orders in (t - w, t];
- device sharing: the distinct users of the device in (t - w, t], the newest
  `detectors.detail_list_max` (+1) of them with their latest times;
- geo anomaly: the user's cities seen strictly before t in (t - w, t);
- high value: an amount above the threshold;
- ACCOUNT_TAKEOVER (with a model): risk at or above the version's takeover_risk.

Each step keeps its history for the rule's maximum window (rules.*_max_window_ms), so a version may
widen a window (docs/rules.md). The versions come from `RuleSet.to_row()` rows: the initial one, and
with live rules those read from the rules topic (`fraudstream.flink.rules`). The alert itself (its
text and details) stays in Python, in the detectors' own code configured as the candidate's version,
so both engines emit identical alerts; the cooldown is the same rule in Java (`Cooldown.java`).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from pyflink.common import Types
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.datastream.functions import MapFunction, RuntimeContext
from pyflink.java_gateway import get_gateway

from fraudstream.config import Settings
from fraudstream.detectors import build_detectors
from fraudstream.detectors.base import Alert, Detector
from fraudstream.detectors.risk import ALERT_TYPE as TAKEOVER
from fraudstream.detectors.risk import RiskAlerts
from fraudstream.events.model import DeadLetter, Order
from fraudstream.events.redelivery import redelivery_horizon
from fraudstream.features.spec import FeatureSpec
from fraudstream.flink.functions import announce_origin, now_ms
from fraudstream.flink.job_metrics import JobMetrics
from fraudstream.model.file import ModelFile
from fraudstream.rules.model import FLAT_FIELDS, RULES, RuleSet

logger = logging.getLogger(__name__)

PICKLED = Types.PICKLED_BYTE_ARRAY()


@dataclass(frozen=True)
class SqlStreams:
    alerts: DataStream  # Alert, after the cooldown
    dead_letters: DataStream  # DeadLetter
    orders: DataStream | None  # Order, for --verbose only (each one crosses into Python)
    archive_rows: DataStream  # the orders the rules saw, as rows with the record as received (`raw`, archive on)
    # With a model: each order's (transaction_id, features, risk, reasons) as Java rows, for tests
    scored: DataStream | None = None


def order_from_row(row: Any, offset: int = 0) -> Order:
    """An `Order` from the order columns of a row (as OrderAdmission emits them), from `offset` on."""
    f = row[offset : offset + 9] if isinstance(row, tuple) else [row[i] for i in range(offset, offset + 9)]
    return Order(
        transaction_id=f[0],
        user_id=f[1],
        device_id=f[2],
        restaurant_id=f[3],
        amount=f[4],
        city=f[5],
        payment_method=f[6],
        event_time=f[7],
        behavior=f[8],
    )


def alert_from_candidate(detector: Detector, order: Order, n: int | None, m: dict[str, int] | None) -> Alert:
    """The alert a rule candidate stands for, built by the detector's own code. `n` is the
    velocity count, or the number of the device's users or of the user's cities before this
    order; `m` the newest of those users or cities with their latest times (a bounded map)."""
    t = detector.alert_type
    if t == "VELOCITY_FRAUD":
        return detector.alert(order, n)  # type: ignore[attr-defined]
    m = m or {}
    if t == "DEVICE_SHARING_FRAUD":
        return detector.alert(order, m, n)  # type: ignore[attr-defined]
    if t == "GEO_ANOMALY_FRAUD":
        others = {c: ts for c, ts in m.items() if c != order.city}
        total = None if n is None else n - (order.city in m)
        return detector.alert(order, others, total)  # type: ignore[attr-defined]
    return detector.alert(order)  # type: ignore[attr-defined]


def alert_from_scored_candidate(detectors: dict[str, Detector], risk: RiskAlerts | None, value: Any) -> Alert:
    """The alert a candidate row stands for (RuleRows.candidateType()): an ACCOUNT_TAKEOVER from the
    order's risk and reasons, or a rule's alert marked with its order's risk (with a model)."""
    order = order_from_row(value, 2)
    versioned = len(value) > 16  # a rule step's candidate: the version's takeover_risk and min_risk
    if value[0] == TAKEOVER:
        assert risk is not None, "an ACCOUNT_TAKEOVER candidate without a model"
        reasons = orjson.loads(value[15]) if value[15] else []
        return risk.takeover(order, value[14], reasons, value[22] if versioned else None)
    alert = alert_from_candidate(detectors[value[0]], order, value[11], value[12])
    return risk.mark(alert, value[14], value[21] if versioned else None) if risk is not None else alert


class CandidateAlert(MapFunction):
    """The alert a candidate stands for, with the text and details the detector's (or
    RiskAlerts') own code gives it (the cooldown has already run, in the JVM). Counts the
    alerts by type and severity (`fraudstream_alerts`)."""

    def __init__(self, detectors: list[Detector], risk: RiskAlerts | None = None) -> None:
        self.detectors = {d.alert_type: d for d in detectors}
        self.risk = risk
        self.versioned: dict[tuple[Any, ...], Detector] = {}

    def open(self, runtime_context: RuntimeContext) -> None:
        announce_origin()
        _announce_pydantic()
        self.metrics = JobMetrics.from_context(runtime_context)

    def map(self, value: Any) -> Alert:
        detectors = self.detectors
        if len(value) > 16 and value[0] in self.detectors:
            # the rule's detector configured as the version in force at the order's event time
            key = (value[0], value[17], value[18], value[19])
            detector = self.versioned.get(key)
            if detector is None:
                detector = self.versioned[key] = _detector_for(self.detectors[value[0]], *key[1:])
            detectors = {value[0]: detector}
        alert = alert_from_scored_candidate(detectors, self.risk, value)
        self.metrics.alert(alert)
        version = value[16] if len(value) > 16 else None
        return dataclasses.replace(alert, detected_at=now_ms(), rule_version=version)


def _detector_for(base: Detector, threshold: float, window_ms: int, severity: str | None) -> Detector:
    """A copy of `base` with a version's threshold, window and severity (-1 / None: base's)."""
    d = copy.copy(base)
    if threshold is not None and threshold >= 0 and hasattr(d, "threshold"):
        d.threshold = type(d.threshold)(threshold)  # type: ignore[attr-defined]
    if window_ms is not None and window_ms >= 0 and hasattr(d, "window_ms"):
        d.window_ms = int(window_ms)  # type: ignore[attr-defined]
    if severity:
        d.severity = severity
    return d


_pydantic_announced: list[bool] = []


def _announce_pydantic() -> None:
    """Log once per Python worker where pydantic came from: on a cluster, the shipped directory
    (python.files), not the client's site-packages (which python.pythonpath would put first)."""
    if not _pydantic_announced:
        _pydantic_announced.append(True)
        import pydantic

        logger.warning("fraudstream worker: pydantic imported from %s", pydantic.__file__)


def _dead_letter(row: Any) -> DeadLetter:
    return DeadLetter(reason=row[0], detail=row[1], raw=row[2], seen_at=row[3], event_time=row[4])


def detect(
    env: StreamExecutionEnvironment,
    settings: Settings,
    lines: DataStream,
    readers: int,
    raw_charset: str | None,
    max_future_ms: int,
    model: ModelFile | None = None,
    tap: bool = False,
    rule_set: RuleSet | None = None,
    versions: DataStream | None = None,
) -> SqlStreams:
    """The SQL engine's part of the job, from raw records to deduplicated alerts.

    `lines` carries byte arrays (Kafka) or text (`raw_charset` names how text stands for bytes).
    `model`: the risk model (loaded from settings.model.path), or None for the rules alone.
    `tap` (tests): with a model, `scored` carries every order's features, risk and reasons.
    `rule_set`: the version in force at the start (None: the settings', version 0); `versions`:
    later versions as flat rows (RuleRows.flatType), None when rules are not live.
    """
    jvm = get_gateway().jvm
    helper = jvm.io.fraudstream.flink
    p = settings.pipeline
    bound = p.out_of_orderness_ms
    j_lines = lines._j_data_stream
    if raw_charset is not None:
        j_lines = j_lines.map(helper.StringToBytes(raw_charset)).name("to-bytes").setParallelism(readers)
    # With the archive on, each order keeps the record as received: for the archive, and for a
    # dead letter made later. Without it, the record is not carried (a later dead letter then
    # holds the order's fields as JSON).
    admission = helper.OrderAdmission(
        p.max_record_bytes, settings.store.dead_letter_max_chars, bound, max_future_ms, settings.archive.enabled
    )
    j_admitted = (
        j_lines.process(admission, helper.OrderAdmission.orderType())
        .name("admit")
        .uid("sql-admit")
        .setParallelism(readers)
    )
    idle = settings.kafka.idle_timeout_ms if settings.pipeline.source == "kafka" else 0
    j_orders = (
        j_admitted.assignTimestampsAndWatermarks(helper.OrderTimestamps.strategy(bound, idle))
        .name("event-time")
        .setParallelism(readers)
    )
    detectors = build_detectors(settings.detectors)
    dead_letters = helper.OrderAdmission.DEAD_LETTERS
    initial = rule_set if rule_set is not None else RuleSet.from_settings(settings)
    if model is None:
        # One step keyed by user checks the input and runs the user's rules (UserStep).
        candidates, j_timely, checked, refused = _rule_steps(helper, settings, j_orders, initial, versions, True)
        scored = None
    else:
        # Keyed by user, behind the shuffle: re-deliveries of an order become `duplicate` dead
        # letters, and an order behind the combined watermark (after idleness) a `late` one,
        # never a silent drop. The features come after it, then the rules.
        j_timely = (
            j_orders.keyBy(helper.Redelivery.UserKey())
            .process(
                helper.Redelivery(redelivery_horizon(settings.rules), settings.store.dead_letter_max_chars),
                helper.OrderAdmission.orderType(),
            )
            .name("redelivery")
            .uid("sql-redelivery")
            .setParallelism(p.parallelism_of("redelivery"))
        )
        checked = j_timely
        # The orders risky enough for any version's takeover_risk get their reasons.
        explain_from = (
            min(initial.takeover_risk, settings.rules.min_takeover_risk)
            if versions is not None
            else initial.takeover_risk
        )
        j_scored, scored = _score(helper, settings, j_timely, model, tap, explain_from)
        candidates, _, _, refused = _rule_steps(helper, settings, j_scored, initial, versions, False)
    row_type = candidates.getType()
    d = settings.detectors
    keep_ms = max([d.dedup_cooldown_ms, *(d.cooldown_of(rule) for rule in RULES)])
    cooled = (
        candidates.keyBy(helper.Cooldown.Key())
        .process(helper.Cooldown(keep_ms, row_type), row_type)
        .name("cooldown")
        .uid("sql-cooldown")
        .setParallelism(p.parallelism_of("cooldown"))
    )
    risk = RiskAlerts(settings.model, settings.alerts, model.version) if model is not None else None
    alerts = (
        DataStream(cooled)
        .map(CandidateAlert(detectors, risk), output_type=PICKLED)
        .name("alert-text")
        .set_parallelism(p.parallelism_of("alert-text"))
    )
    dead = (
        DataStream(j_admitted.getSideOutput(dead_letters))
        .union(DataStream(checked.getSideOutput(dead_letters)), DataStream(refused))
        .map(_dead_letter, output_type=PICKLED)
    )
    echo = DataStream(j_orders).map(order_from_row, output_type=PICKLED) if p.verbose else None
    return SqlStreams(alerts, dead, echo, DataStream(j_timely), scored)


def _rule_steps(
    helper: Any, settings: Settings, j_scored: Any, initial: RuleSet, versions: DataStream | None, checks: bool
) -> tuple[Any, Any, Any, Any]:
    """The rules' candidates (RuleRows.candidateType()), the admitted orders as received and the
    step whose side output has the input's dead letters (`checks` only, else None), and the
    versions refused as stale (dead letter rows, OrderAdmission.deadLetterType()). The Stamper
    (parallelism 1) stamps each version with the event time it applies from, behind the orders'
    watermark, and broadcasts it to the user's step (keyed by user) and DeviceRules (keyed by
    device). `j_scored`: scored rows (ScoredRows.scoredType), or with `checks` the orders as
    admitted (OrderAdmission.orderType), which UserStep checks for re-deliveries and lateness
    before its rules and passes on to DeviceRules. `versions`: the checked versions as flat rows
    (RuleRows.flatType), or None (live off: the initial version alone)."""
    gateway = get_gateway()
    rules = helper.rules
    names = gateway.new_array(gateway.jvm.String, len(FLAT_FIELDS))
    for i, name in enumerate(FLAT_FIELDS):
        names[i] = name
    flat_type = rules.RuleRows.flatType(names)
    values = gateway.new_array(gateway.jvm.Object, len(FLAT_FIELDS))
    for i, value in enumerate(initial.to_row()):
        values[i] = value
    p = settings.pipeline
    n_scored = j_scored.getParallelism()
    j_watermarks = j_scored.filter(rules.RuleRows.NoRecords()).name("rules-watermark").setParallelism(n_scored)
    # Live off: no versions come (the filtered orders stand for an empty input 2, whose
    # watermark the Stamper ignores).
    j_versions = versions._j_data_stream if versions is not None else j_watermarks
    stamped = (
        j_watermarks.connect(j_versions)
        .transform(
            "stamp-rules",
            flat_type,
            rules.Stamper(rules.RuleRows.fromValues(values), settings.store.dead_letter_max_chars),
        )
        .uid("sql-rules-stamp")
        .setParallelism(1)
    )
    descriptors = gateway.new_array(gateway.jvm.org.apache.flink.api.common.state.MapStateDescriptor, 1)
    descriptors[0] = rules.RuleStep.versions(flat_type)  # broadcast(...) takes varargs
    broadcast = stamped.broadcast(descriptors)
    r = settings.rules
    list_max = int(settings.detectors.detail_list_max)
    n = p.parallelism_of("rules")
    candidate_type = rules.RuleRows.candidateType()
    windows = (r.max_window_of("velocity"), r.max_window_of("geo"), list_max, settings.detectors.dedup_cooldown_ms)
    if checks:
        step = rules.UserStep(
            flat_type, *windows, redelivery_horizon(settings.rules), settings.store.dead_letter_max_chars
        )
    else:
        step = rules.UserRules(flat_type, *windows)
    # RuleStepOperator: each step's time is the lesser of its orders' and the Stamper's
    # watermarks, idle or not (Flink's own operator would let the Stamper's run ahead after idleness).
    apply = rules.RuleStepOperator.apply
    users = (
        apply(j_scored.keyBy(helper.Redelivery.UserKey()), broadcast, step, candidate_type, "user-rules")
        .uid("sql-user-step" if checks else "sql-user-rules")
        .setParallelism(n)
    )
    to_devices = users.getSideOutput(rules.UserStep.TO_DEVICES) if checks else j_scored
    devices = (
        apply(
            to_devices.keyBy(helper.DeviceFeatures.DeviceKey()),
            broadcast,
            rules.DeviceRules(flat_type, r.max_window_of("device_sharing"), list_max),
            candidate_type,
            "device-rules",
        )
        .uid("sql-device-rules")
        .setParallelism(n)
    )
    others = gateway.new_array(gateway.jvm.org.apache.flink.streaming.api.datastream.DataStream, 1)
    others[0] = devices  # union(...) takes varargs
    admitted = users.getSideOutput(rules.UserStep.ADMITTED) if checks else None
    return users.union(others), admitted, users if checks else None, stamped.getSideOutput(rules.Stamper.REJECTED)


def _score(
    helper: Any,
    settings: Settings,
    j_timely: Any,
    model: ModelFile | None,
    tap: bool = False,
    explain_from: float | None = None,
) -> tuple[Any, DataStream | None]:
    """The admitted orders with `risk` and `reasons` (Java rows, ScoredRows.scoredType), and,
    with a model and `tap`, the scoring step's tap for tests. Features are computed in keyed state in the
    JVM (DeviceFeatures, then UserFeatures: a device's users feed the user's features), the
    model is applied in batches by RiskScorer, chained after them."""
    rows = helper.ScoredRows
    if model is None:
        # beside the redelivery step (chained to it)
        j_scored = (
            j_timely.map(helper.NoRisk(), rows.scoredType())
            .name("no-model")
            .setParallelism(settings.pipeline.parallelism_of("redelivery"))
        )
        return j_scored, None
    spec = FeatureSpec.from_settings(settings.features).to_json()
    gateway = get_gateway()
    names = gateway.new_array(gateway.jvm.String, len(model.features))
    for i, name in enumerate(model.features):
        names[i] = name
    baseline = gateway.new_array(gateway.jvm.double, len(model.baseline))
    for i, value in enumerate(model.baseline):
        baseline[i] = float(value)
    m = settings.model
    n = settings.pipeline.parallelism_of("features")
    scorer = helper.RiskScorer(
        bytearray(model.onnx),
        names,
        baseline,
        m.batch_size,
        m.takeover_risk if explain_from is None else explain_from,
        m.explain_top,
        tap,
    )
    j_devices = (
        j_timely.keyBy(helper.DeviceFeatures.DeviceKey())
        .process(helper.DeviceFeatures(spec), rows.withDeviceUsers())
        .name("device-features")
        .uid("sql-device-features")
        .setParallelism(n)
    )
    j_scored = (
        j_devices.keyBy(helper.Redelivery.UserKey())
        .process(helper.UserFeatures(spec), rows.withFeatures())
        .name("user-features")
        .uid("sql-user-features")
        .setParallelism(n)
        .transform("score", rows.scoredType(), scorer)
        .uid("sql-score")
        .setParallelism(n)
    )
    return j_scored, DataStream(j_scored.getSideOutput(helper.RiskScorer.SCORED)) if tap else None
