"""Reading the job's Parquet archive back in tests, with pyarrow alone (as a user would)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds


def archived(data_dir: Path, part: str = "orders") -> list[dict]:
    """Every committed row under <data_dir>/archive/<part>, partition columns included.

    pyarrow skips names starting with '.' or '_': in-progress part files and `_SUCCESS`."""
    folder = data_dir / "archive" / part
    if not folder.is_dir():
        return []
    return ds.dataset(folder, format="parquet", partitioning="hive").to_table().to_pylist()
