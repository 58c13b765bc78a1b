"""The Flink job graph and the thin process functions that run the pure rules."""
