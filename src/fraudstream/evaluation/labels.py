"""Labelled events: the ground truth an evaluation scores alerts against.

Every loader funnels its records through `iter_labelled`, so a JSON-lines file, the Parquet
archive and (later) a Kafka topic are read by one set of rules and count rejects the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from fraudstream.evaluation.errors import EvaluationInputError
from fraudstream.events.parse import event_time_ms

logger = logging.getLogger(__name__)

HONEST_BEHAVIORS = frozenset({"", "normal"})
# Parquet archive columns we read; `raw` holds the original record (fraud_actor, extra fields).
ARCHIVE_COLUMNS = ("transaction_id", "user_id", "device_id", "event_time", "behavior", "raw")
_BATCH_ROWS = 65_536
_LOGGED_BAD_LINES = 5


@dataclass(frozen=True, slots=True)
class LabelledEvent:
    """One order with its label: `pattern` is None for honest orders, `actor` is the episode id."""

    transaction_id: str
    user_id: str
    device_id: str
    event_time: int
    pattern: str | None = None
    actor: str | None = None

    @property
    def is_fraud(self) -> bool:
        return self.pattern is not None


@dataclass(slots=True)
class LoadStats:
    """Tallies of records not used, so a bad file or a wrong time window shows in the report."""

    records: int = 0  # records seen (blank lines excluded)
    unreadable: int = 0  # not a JSON object
    invalid: int = 0  # an object without a usable id or event_time (alerts: without alert_type)
    outside_window: int = 0  # dropped by the time filter after reading
    missing_actor: int = 0  # fraud events without fraud_actor (an actor was derived instead)
    kept: int = 0


def in_window(event_time: int, start_ms: int | None, end_ms: int | None) -> bool:
    """The time filter of every loader: start_ms <= event_time < end_ms, either bound optional."""
    return (start_ms is None or event_time >= start_ms) and (end_ms is None or event_time < end_ms)


def epoch_ms(value: Any) -> int | None:
    """Epoch milliseconds as the event contract reads them (docs/event-contract.md): an
    integer or an RFC 3339 timestamp with a zone; None for what the job would reject."""
    return event_time_ms(value)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value)
    return text if text.strip() else None


def fallback_actor(pattern: str, user_id: str, device_id: str) -> str:
    """The actor of a fraud event without fraud_actor."""
    # Records written before fraud_actor existed: an account farm is one device, every other
    # pattern one account. Two episodes of the same account then merge into one actor.
    return f"{pattern}:{device_id if pattern == 'account_farm' else user_id}"


def to_event(record: dict[str, Any]) -> tuple[LabelledEvent | None, bool]:
    """One record as a `LabelledEvent` (None if unusable), and whether its actor was derived."""
    tx = _text(record.get("transaction_id"))
    if tx is None:
        tx = _text(record.get("order_id"))  # a legacy producer's name for the id
    event_time = epoch_ms(record.get("event_time"))
    if tx is None or event_time is None:
        return None, False
    user_id = _text(record.get("user_id")) or ""
    device_id = _text(record.get("device_id")) or ""
    behavior = record.get("behavior")
    pattern = behavior.strip() if isinstance(behavior, str) else None
    if pattern is not None and pattern in HONEST_BEHAVIORS:
        pattern = None
    actor = None
    derived = False
    if pattern is not None:
        actor = _text(record.get("fraud_actor"))
        if actor is None:
            actor = fallback_actor(pattern, user_id, device_id)
            derived = True
    return LabelledEvent(tx, user_id, device_id, event_time, pattern, actor), derived


def iter_labelled(
    records: Iterable[Any],
    start_ms: int | None = None,
    end_ms: int | None = None,
    stats: LoadStats | None = None,
) -> Iterator[LabelledEvent]:
    """Labelled events from decoded records; anything that is not a dict counts as unreadable.

    Loaders pass a non-dict (e.g. None) for a record they could not decode, so the count of
    unreadable records is kept in one place. Pass `stats` to read the tallies afterwards.
    """
    tally = stats if stats is not None else LoadStats()
    for record in records:
        tally.records += 1
        if not isinstance(record, dict):
            tally.unreadable += 1
            continue
        event, derived = to_event(record)
        if event is None:
            tally.invalid += 1
            continue
        if not in_window(event.event_time, start_ms, end_ms):
            tally.outside_window += 1
            continue
        tally.missing_actor += derived
        tally.kept += 1
        yield event


def _warn(source: object, stats: LoadStats) -> None:
    if stats.unreadable or stats.invalid:
        logger.warning("%s: %d unreadable and %d invalid record(s) skipped", source, stats.unreadable, stats.invalid)
    if stats.missing_actor:
        logger.warning(
            "%s: %d fraud event(s) without fraud_actor; actor taken from the user (device for account_farm)",
            source,
            stats.missing_actor,
        )


def _jsonl_records(path: Path) -> Iterator[Any]:
    """Decoded lines of a JSON-lines file; None stands for a line that is not a JSON object."""
    bad = 0
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                data = orjson.loads(line)
            except orjson.JSONDecodeError:
                data = None
            if not isinstance(data, dict):
                bad += 1
                if bad <= _LOGGED_BAD_LINES:
                    logger.warning("%s:%d is not a JSON object; skipped", path, number)
                data = None
            yield data


def load_jsonl(
    path: str | Path,
    start_ms: int | None = None,
    end_ms: int | None = None,
    stats: LoadStats | None = None,
) -> list[LabelledEvent]:
    """Labelled events from a JSON-lines file; blank lines are skipped, bad lines counted."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationInputError(f"no labelled-events file at {path}")
    tally = stats if stats is not None else LoadStats()
    events = list(iter_labelled(_jsonl_records(path), start_ms, end_ms, tally))
    _warn(path, tally)
    return events


def _archive_records(dataset: Any, columns: list[str], scan_filter: Any) -> Iterator[Any]:
    """Rows of the archive as records: the original JSON in `raw`, overlaid by the typed columns."""
    for batch in dataset.to_batches(columns=columns, filter=scan_filter, batch_size=_BATCH_ROWS):
        for row in batch.to_pylist():
            yield archived_record(row)


def archived_record(row: dict[str, Any]) -> dict[str, Any]:
    """An archived order as received: the original JSON in `raw` (its extra fields), overlaid by
    the typed columns, which are what the job admitted (e.g. order_id already renamed), so they win."""
    raw = row.pop("raw", None)
    record: dict[str, Any] = {}
    if raw:
        try:
            decoded = orjson.loads(raw)
        except orjson.JSONDecodeError:
            decoded = None
        if isinstance(decoded, dict):
            record = decoded
    record.update({k: v for k, v in row.items() if v is not None})
    return record


def open_order_archive(directory: str | Path) -> tuple[Path, Any]:
    """The orders of a Flink Parquet archive as a pyarrow dataset, and the folder they are in.

    `directory` is the orders folder, or the archive root holding `orders/` (and `dead_letters/`).
    Files whose names start with '_' or '.' (`_SUCCESS`, in-progress `.part-*` files) are skipped.
    """
    import pyarrow.dataset as ds

    directory = Path(directory)
    if not directory.is_dir():
        raise EvaluationInputError(f"no Parquet archive directory at {directory}")
    # The job's archive root holds orders/ and dead_letters/ side by side: given the root, read orders.
    if (directory / "orders").is_dir() and not any(directory.glob("dt=*")):
        directory = directory / "orders"
    try:
        dataset = ds.dataset(directory, format="parquet", partitioning="hive", ignore_prefixes=[".", "_"])
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise EvaluationInputError(f"cannot read the Parquet archive at {directory}: {exc}") from exc
    return directory, dataset


def load_parquet(
    directory: str | Path,
    start_ms: int | None = None,
    end_ms: int | None = None,
    stats: LoadStats | None = None,
) -> list[LabelledEvent]:
    """Labelled events from the Flink Parquet archive (`<dir>/dt=YYYY-MM-DD/hour=HH/part-...`).

    `directory` is the orders folder, or the archive root holding `orders/` (and `dead_letters/`).

    Files whose names start with '_' or '.' (`_SUCCESS`, in-progress `.part-*` files) are not
    data and are skipped. The time filter is pushed into the scan, so rows it drops are not read
    and not counted in `stats.outside_window`.
    """
    import pyarrow.dataset as ds

    directory, dataset = open_order_archive(directory)
    tally = stats if stats is not None else LoadStats()
    if not dataset.files:
        logger.warning("%s: the archive holds no data files", directory)
        return []
    names = set(dataset.schema.names)
    if "event_time" not in names or "transaction_id" not in names:
        raise EvaluationInputError(f"{directory} is not an order archive: no transaction_id or event_time column")
    columns = [c for c in ARCHIVE_COLUMNS if c in names]
    scan_filter = None
    if start_ms is not None:
        scan_filter = ds.field("event_time") >= start_ms
    if end_ms is not None:
        upper = ds.field("event_time") < end_ms
        scan_filter = upper if scan_filter is None else scan_filter & upper
    try:
        events = list(iter_labelled(_archive_records(dataset, columns, scan_filter), start_ms, end_ms, tally))
    except (OSError, ValueError) as exc:
        raise EvaluationInputError(f"cannot read the Parquet archive at {directory}: {exc}") from exc
    _warn(directory, tally)
    return events
