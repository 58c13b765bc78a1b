"""Kafka: a local broker for development and tests, client settings, the producer and the alert tail."""
