"""Where the JVM pieces fetched by `make jars` (jvm/pom.xml) live, and a clear error when they don't."""

from __future__ import annotations

from pathlib import Path

import fraudstream
from fraudstream.errors import UserFacingError

# src/fraudstream/__init__.py -> the checkout's root
_CHECKOUT = Path(fraudstream.__file__).resolve().parents[2]


class MissingJarsError(UserFacingError):
    """The Kafka broker or connector jars were never fetched."""


def jars_dir(configured: Path | None) -> Path:
    return (configured or _CHECKOUT / "jvm" / "lib").resolve()


def _jars(configured: Path | None, part: str, what: str) -> list[Path]:
    folder = jars_dir(configured) / part
    found = sorted(folder.glob("*.jar"))
    if not found:
        raise MissingJarsError(
            f"{what} not found in {folder}: run 'make jars' (needs Maven: apt-get install maven) "
            "or point broker.jars_dir at a folder with the kafka/, flink/, parquet/ and onnx/ that it fetches"
        )
    return found


def kafka_classpath(configured: Path | None) -> str:
    """Class path of the Kafka broker and its tools."""
    return ":".join(str(p) for p in _jars(configured, "kafka", "Kafka broker jars"))


def flink_connector_jars(configured: Path | None) -> list[Path]:
    """The Flink Kafka connector (one shaded jar)."""
    return _jars(configured, "flink", "Flink Kafka connector jar")


def archive_jars(configured: Path | None) -> list[Path]:
    """Flink's Parquet format and the Hadoop classes it needs, for the raw-event archive."""
    return _jars(configured, "parquet", "Parquet archive jars")


def onnx_jars(configured: Path | None) -> list[Path]:
    """ONNX Runtime's Java library, which scores the risk model in the job (model.path set)."""
    return _jars(configured, "onnx", "ONNX Runtime jar")
