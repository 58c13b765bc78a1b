"""fraudstream: real-time fraud detection for food-delivery orders on Apache Flink."""

__version__ = "0.1.0"
