"""How long reading one archive hour takes when it holds a Parquet file per checkpoint.

    .venv/bin/python benchmarks/archive_files.py --files 14400 --files 1200

Writes, per --files value, one synthetic hour partition of that many small part files (the
archive's columns, --rows orders each: an hour at the live checkpoint pace of 250 ms holds
14,400, at 3 s 1,200), then times reading it back with pyarrow (as backtest and evaluate do)
and one DuckDB scan (as the dashboard's alert page does). Prints a table; nothing is kept.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq


def _hour(root: Path, files: int, rows: int) -> int:
    folder = root / "dt=2026-12-03" / "hour=12"
    folder.mkdir(parents=True)
    table = pa.table(
        {
            "transaction_id": [f"t_{i:06d}" for i in range(rows)],
            "user_id": [f"u_{i % 97}" for i in range(rows)],
            "device_id": [f"d_{i % 89}" for i in range(rows)],
            "amount": [250.0 + i for i in range(rows)],
            "city": ["Mumbai"] * rows,
            "event_time": pa.array([1_796_299_200_000 + i for i in range(rows)], pa.int64()),
            "raw": ['{"transaction_id":"t","user_id":"u","amount":250.0,"city":"Mumbai"}'] * rows,
        }
    )
    for i in range(files):
        pq.write_table(table, folder / f"part-bench-{i}", compression="snappy")
    return sum(f.stat().st_size for f in folder.iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, action="append", help="part files in the hour (repeatable)")
    parser.add_argument("--rows", type=int, default=12, help="orders per file (50 orders/s, 250 ms: 12)")
    args = parser.parse_args()
    print("files | MB | pyarrow read s | DuckDB scan s")
    for files in args.files or [14_400, 1_200]:
        root = Path(tempfile.mkdtemp(prefix="archive-files-"))
        try:
            size = _hour(root, files, args.rows)
            started = time.perf_counter()
            n = ds.dataset(root, format="parquet", partitioning="hive").to_table().num_rows
            read_s = time.perf_counter() - started
            started = time.perf_counter()
            query = (
                f"SELECT count(*) FROM read_parquet('{root}/*/*/*part-*', hive_partitioning=true) WHERE city = 'Mumbai'"
            )
            [(scanned,)] = duckdb.sql(query).fetchall()
            scan_s = time.perf_counter() - started
            assert n == scanned == files * args.rows
            print(f"{files} | {size / 1e6:.0f} | {read_s:.2f} | {scan_s:.2f}")
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
