"""Detection quality of a run (`fraudstream evaluate`): labelled events in, alerts in, a report out.

Pure Python, no Flink or Kafka: loaders for the ground truth and the alerts, the scoring
(`evaluate`, by the rule in `MATCHING_RULE`) and the ways a report is shown.
"""

from fraudstream.evaluation.alerts import AlertRecord, iter_alerts, load_alerts, load_alerts_sqlite
from fraudstream.evaluation.errors import AlertStoreMissingError, EvaluationInputError
from fraudstream.evaluation.labels import (
    LabelledEvent,
    LoadStats,
    iter_labelled,
    load_jsonl,
    load_parquet,
)
from fraudstream.evaluation.metrics import (
    ALL,
    DETECTOR_PATTERNS,
    MATCHING_RULE,
    Counts,
    DetectorRow,
    PatternRow,
    Report,
    evaluate,
)
from fraudstream.evaluation.output import (
    compare,
    compare_to_json,
    format_table,
    report_from_json,
    report_to_json,
    save_chart,
)

__all__ = [
    "ALL",
    "DETECTOR_PATTERNS",
    "MATCHING_RULE",
    "AlertRecord",
    "AlertStoreMissingError",
    "Counts",
    "DetectorRow",
    "EvaluationInputError",
    "LabelledEvent",
    "LoadStats",
    "PatternRow",
    "Report",
    "compare",
    "compare_to_json",
    "evaluate",
    "format_table",
    "iter_alerts",
    "iter_labelled",
    "load_alerts",
    "load_alerts_sqlite",
    "load_jsonl",
    "load_parquet",
    "report_from_json",
    "report_to_json",
    "save_chart",
]
