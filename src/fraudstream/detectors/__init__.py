"""Pure fraud rules: Python over plain state objects, no Flink anywhere."""

from fraudstream.config import DetectorSettings
from fraudstream.detectors.base import Alert, Detector
from fraudstream.detectors.dedup import AlertDeduplicator
from fraudstream.detectors.device_sharing import DeviceSharingDetector
from fraudstream.detectors.geo_anomaly import GeoAnomalyDetector
from fraudstream.detectors.high_value import HighValueDetector
from fraudstream.detectors.velocity import VelocityDetector

__all__ = [
    "Alert",
    "AlertDeduplicator",
    "Detector",
    "DeviceSharingDetector",
    "GeoAnomalyDetector",
    "HighValueDetector",
    "VelocityDetector",
    "build_detectors",
]


def build_detectors(cfg: DetectorSettings) -> list[Detector]:
    """The four rules of the seed system, configured."""
    return [
        VelocityDetector(cfg.velocity_threshold, cfg.velocity_window_ms),
        DeviceSharingDetector(cfg.device_sharing_threshold, cfg.device_sharing_window_ms, cfg.detail_list_max),
        HighValueDetector(cfg.high_value_threshold),
        GeoAnomalyDetector(cfg.geo_window_ms, cfg.detail_list_max),
    ]
