"""The raw-event archive (the "bronze layer"): every valid order as received, and every dead
letter, written by the job to Parquet files partitioned by hour.

    <archive>/orders/dt=YYYY-MM-DD/hour=HH/part-...        by the order's event time (UTC)
    <archive>/dead_letters/dt=YYYY-MM-DD/hour=HH/part-...  by when the job saw the record

Flink's FileSink (io.fraudstream.flink.sinks.ParquetArchive) writes a part file per partition
and subtask, hidden while in progress (`.part-...inprogress...`), and renames it into place
only when the checkpoint covering its rows completes: a crash leaves no half-written or
duplicated file visible, and a resumed run rewrites nothing it had committed. Bulk formats
roll at every checkpoint, so the checkpoint interval sets the file size. (It is a DataStream
sink, not the Table API's filesystem connector, which wrote `_SUCCESS` markers but cost every
run seconds of SQL planning at start-up.)

Columns of orders: the contract fields, `behavior` (the generator's label, if any) and `raw`,
the record exactly as received (its extra fields, e.g. a legacy producer's `order_id` or
`device_type`, and labels such as `fraud_actor`, live there). The datastream engine has no
bytes as received by then, so its `raw` is the parsed order re-encoded as JSON (same fields).
"""

from __future__ import annotations

import logging

import orjson
from pyflink.common import Row, Types
from pyflink.datastream import DataStream, StreamExecutionEnvironment

from fraudstream.config import Settings
from fraudstream.events.model import DeadLetter, Order

logger = logging.getLogger(__name__)

ORDER_COLUMNS = (
    ("transaction_id", "STRING"),
    ("user_id", "STRING"),
    ("device_id", "STRING"),
    ("restaurant_id", "STRING"),
    ("amount", "DOUBLE"),
    ("city", "STRING"),
    ("payment_method", "STRING"),
    ("event_time", "BIGINT"),
    ("behavior", "STRING"),
    ("raw", "STRING"),
)
DEAD_LETTER_COLUMNS = (
    ("reason", "STRING"),
    ("detail", "STRING"),
    ("raw", "STRING"),
    ("seen_at", "BIGINT"),
    ("event_time", "BIGINT"),
)
ORDER_ROW = Types.ROW_NAMED(
    [c for c, _ in ORDER_COLUMNS],
    [Types.STRING()] * 4
    + [Types.DOUBLE(), Types.STRING(), Types.STRING(), Types.LONG(), Types.STRING(), Types.STRING()],
)
_DEAD_ROW = Types.ROW_NAMED(
    [c for c, _ in DEAD_LETTER_COLUMNS],
    [Types.STRING(), Types.STRING(), Types.STRING(), Types.LONG(), Types.LONG()],
)


def order_row(order: Order) -> Row:
    """An archive row for the datastream engine, whose orders are parsed objects by now."""
    o = order
    raw = orjson.dumps(o.to_dict()).decode()
    return Row(
        o.transaction_id, o.user_id, o.device_id, o.restaurant_id, float(o.amount), o.city,
        o.payment_method, o.event_time, o.behavior, raw,
    )  # fmt: skip


def dead_letter_row(dead: DeadLetter) -> Row:
    return Row(dead.reason, dead.detail, dead.raw, dead.seen_at, dead.event_time)


def order_rows(orders: DataStream) -> DataStream:
    """`Order` objects (the datastream engine's) as archive rows."""
    return orders.map(order_row, output_type=ORDER_ROW).name("to-archive-row").uid("to-archive-row")


def attach_archive(
    env: StreamExecutionEnvironment,
    settings: Settings,
    orders: DataStream,
    dead_letters: DataStream,
) -> None:
    """Attach the archive's two sinks to the job (io.fraudstream.flink.sinks.ParquetArchive).
    `orders` carries rows with the columns of `ORDER_COLUMNS`, by those names; `dead_letters`
    carries `DeadLetter`s."""
    from pyflink.java_gateway import get_gateway

    gateway = get_gateway()
    archive = gateway.jvm.io.fraudstream.flink.sinks.ParquetArchive
    base = settings.archive_uri.rstrip("/")
    dead_rows = (
        dead_letters.map(dead_letter_row, output_type=_DEAD_ROW).name("to-dead-archive-row").uid("to-dead-archive-row")
    )
    for stream, columns, time_column, folder in (
        (orders, ORDER_COLUMNS, "event_time", "orders"),
        (dead_rows, DEAD_LETTER_COLUMNS, "seen_at", "dead_letters"),
    ):
        names, kinds = _strings(gateway, [c for c, _ in columns]), _strings(gateway, [t for _, t in columns])
        archive.attach(stream._j_data_stream, f"{base}/{folder}", names, kinds, time_column, f"archive-{folder}")
    logger.info("archiving raw orders and dead letters under %s", base)


def _strings(gateway, values: list[str]):
    array = gateway.new_array(gateway.jvm.String, len(values))
    for i, value in enumerate(values):
        array[i] = value
    return array
