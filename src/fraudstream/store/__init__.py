"""SQLite storage of alerts and dead letters, and the queries analysts run on it."""

from fraudstream.store.sqlite import AlertStore, StoreMissingError
from fraudstream.store.writer import BatchWriter

__all__ = ["AlertStore", "BatchWriter", "StoreMissingError"]
