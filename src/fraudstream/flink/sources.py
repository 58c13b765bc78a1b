"""Where orders come from: the built-in generator or a JSON-lines file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson
from pyflink.common import Types, WatermarkStrategy
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.datastream.connectors.file_system import FileSource, StreamFormat
from pyflink.datastream.connectors.number_seq import NumberSequenceSource
from pyflink.datastream.functions import MapFunction, RuntimeContext

from fraudstream.config import GeneratorSettings
from fraudstream.generator import generator_from_settings
from fraudstream.generator.pacing import Pacer

# An effectively endless sequence for "run until stopped".
_UNBOUNDED = 2**62


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # "generator" | "file"
    path: Path | None = None

    @staticmethod
    def parse(text: str) -> SourceSpec:
        """`generator` or `file:PATH`; raises ValueError with a readable message."""
        if text == "generator":
            return SourceSpec("generator")
        if text.startswith("file:"):
            path = Path(text[len("file:") :]).expanduser()
            if not str(path) or str(path) == ".":
                raise ValueError("--source file: needs a path, e.g. file:orders.jsonl")
            if not path.is_file():
                raise ValueError(f"input file not found: {path}")
            return SourceSpec("file", path.resolve())
        raise ValueError(f"unknown source '{text}': use 'generator' or 'file:PATH'")

    @property
    def raw_latin1(self) -> bool:
        return self.kind == "file"


class GenerateOrders(MapFunction):
    """Turns sequence numbers into generated orders (JSON lines), paced to `rate`/s."""

    def __init__(self, cfg: GeneratorSettings) -> None:
        self.cfg = cfg

    def open(self, runtime_context: RuntimeContext) -> None:
        self.gen = generator_from_settings(self.cfg)
        self.pacer = Pacer(self.cfg.rate)

    def map(self, value: int) -> str:
        self.pacer.wait()
        return orjson.dumps(self.gen.next_order()).decode()


def raw_lines(env: StreamExecutionEnvironment, spec: SourceSpec, gen: GeneratorSettings) -> DataStream:
    """A stream of raw text lines from the chosen source (parsed later by AdmitFunction)."""
    if spec.kind == "file":
        assert spec.path is not None
        # ISO-8859-1 maps every byte to one character: invalid UTF-8 is kept, not replaced.
        source = FileSource.for_record_stream_format(
            StreamFormat.text_line_format("ISO-8859-1"), str(spec.path)
        ).build()
        return env.from_source(source, WatermarkStrategy.no_watermarks(), "orders-file").set_parallelism(1)
    end = gen.count - 1 if gen.count is not None else _UNBOUNDED
    if end < 0:
        raise ValueError("--count must be at least 1")
    seq = env.from_source(NumberSequenceSource(0, end), WatermarkStrategy.no_watermarks(), "sequence")
    # One generator instance keeps the stream deterministic and event time monotone.
    return (
        seq.set_parallelism(1)
        .map(GenerateOrders(gen), output_type=Types.STRING())
        .name("generate-orders")
        .set_parallelism(1)
    )
