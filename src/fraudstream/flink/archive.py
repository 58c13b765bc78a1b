"""The raw-event archive (the "bronze layer"): every valid order as received, and every dead
letter, written by the job to Parquet files partitioned by hour.

    <archive>/orders/dt=YYYY-MM-DD/hour=HH/part-...        by the order's event time (UTC)
    <archive>/dead_letters/dt=YYYY-MM-DD/hour=HH/part-...  by when the job saw the record

Flink's filesystem connector writes a part file per partition and subtask, hidden while in
progress (`.part-...inprogress...`), and renames it into place only when the checkpoint
covering its rows completes: a crash leaves no half-written or duplicated file visible, and a
resumed run rewrites nothing it had committed. A committed partition gets a `_SUCCESS` file.
Bulk formats roll at every checkpoint, so the checkpoint interval sets the file size.

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
from pyflink.table import StreamTableEnvironment

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


def sql_string(text: str) -> str:
    """`text` as a Flink SQL string literal: a quote is doubled, the only escape SQL has."""
    return "'" + text.replace("'", "''") + "'"


def _table_sql(name: str, columns: tuple[tuple[str, str], ...], uri: str) -> str:
    cols = ", ".join(f"`{c}` {t}" for c, t in columns)
    return f"""CREATE TEMPORARY TABLE {name} ({cols}, dt STRING, `hour` STRING)
PARTITIONED BY (dt, `hour`) WITH (
  'connector' = 'filesystem',
  'path' = {sql_string(uri)},
  'format' = 'parquet',
  'parquet.compression' = 'SNAPPY',
  'sink.partition-commit.trigger' = 'process-time',
  'sink.partition-commit.delay' = '0 s',
  'sink.partition-commit.policy.kind' = 'success-file'
)"""


def _insert_sql(name: str, view: str, columns: tuple[tuple[str, str], ...], time_column: str) -> str:
    cols = ", ".join(f"`{c}`" for c, _ in columns)
    ts = f"TO_TIMESTAMP_LTZ(`{time_column}`, 3)"
    return f"INSERT INTO {name} SELECT {cols}, DATE_FORMAT({ts}, 'yyyy-MM-dd'), DATE_FORMAT({ts}, 'HH') FROM {view}"


def order_rows(orders: DataStream) -> DataStream:
    """`Order` objects (the datastream engine's) as archive rows."""
    return orders.map(order_row, output_type=ORDER_ROW).name("to-archive-row").uid("to-archive-row")


def attach_archive(
    env: StreamExecutionEnvironment,
    settings: Settings,
    orders: DataStream,
    dead_letters: DataStream,
) -> None:
    """Attach the archive's two sinks to the job. `orders` carries rows with the columns of
    `ORDER_COLUMNS`, by those names; `dead_letters` carries `DeadLetter`s."""
    base = settings.archive_uri.rstrip("/")
    t_env = StreamTableEnvironment.create(env)
    # Partitions are UTC hours, whatever the machine's zone.
    t_env.get_config().set("table.local-time-zone", "UTC")
    dead_rows = (
        dead_letters.map(dead_letter_row, output_type=_DEAD_ROW).name("to-dead-archive-row").uid("to-dead-archive-row")
    )
    statements = t_env.create_statement_set()
    for name, stream, columns, time_column, folder in (
        ("archive_orders", orders, ORDER_COLUMNS, "event_time", "orders"),
        ("archive_dead_letters", dead_rows, DEAD_LETTER_COLUMNS, "seen_at", "dead_letters"),
    ):
        t_env.execute_sql(_table_sql(name, columns, f"{base}/{folder}"))
        t_env.create_temporary_view(f"{name}_in", t_env.from_data_stream(stream))
        statements.add_insert_sql(_insert_sql(name, f"{name}_in", columns, time_column))
    statements.attach_as_datastream()
    logger.info("archiving raw orders and dead letters under %s", base)
