"""Pure fraud rules: Python over plain state objects, no Flink anywhere."""

from fraudstream.config import DetectorSettings
from fraudstream.detectors.base import RULE_ALERT_TYPES, Alert, Detector
from fraudstream.detectors.dedup import AlertDeduplicator
from fraudstream.detectors.device_sharing import DeviceSharingDetector
from fraudstream.detectors.geo_anomaly import GeoAnomalyDetector
from fraudstream.detectors.high_value import HighValueDetector
from fraudstream.detectors.velocity import VelocityDetector

__all__ = [
    "RULE_ALERT_TYPES",
    "Alert",
    "AlertDeduplicator",
    "Detector",
    "DeviceSharingDetector",
    "GeoAnomalyDetector",
    "HighValueDetector",
    "VelocityDetector",
    "build_detectors",
]


def build_detectors(cfg: DetectorSettings, rule_version: int | None = None) -> list[Detector]:
    """The four rules of the seed system, configured: those switched on, each with its
    severity, stamping `rule_version` on their alerts."""
    made: dict[str, Detector] = {
        "velocity": VelocityDetector(cfg.velocity_threshold, cfg.velocity_window_ms),
        "device_sharing": DeviceSharingDetector(
            cfg.device_sharing_threshold, cfg.device_sharing_window_ms, cfg.detail_list_max
        ),
        "high_value": HighValueDetector(cfg.high_value_threshold),
        "geo": GeoAnomalyDetector(cfg.geo_window_ms, cfg.detail_list_max),
    }
    out = []
    for rule, detector in made.items():
        if getattr(cfg, f"{rule}_enabled"):
            detector.severity = getattr(cfg, f"{rule}_severity")
            detector.rule_version = rule_version
            out.append(detector)
    return out
