"""The alert store (SQLite by default, or PostgreSQL at store.url): its schema and migrations,
the writer and the copier from Kafka, and the queries analysts run on it."""

from fraudstream.store.alert_store import AlertStore, OffsetConflict
from fraudstream.store.db import StoreMissingError
from fraudstream.store.writer import BatchWriter

__all__ = ["AlertStore", "BatchWriter", "OffsetConflict", "StoreMissingError"]
