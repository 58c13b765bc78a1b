"""The live feed: new alert rows (id above the last one seen), found by polling the store
here, once, and pushed to every connected page as server-sent events."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fraudstream.store import db, queries
from fraudstream.store.schema import SchemaTooNew

logger = logging.getLogger(__name__)

QUEUE_EVENTS = 100  # events a slow page may fall behind by before it misses some


class Feed:
    """Finds new alerts (`poll`, blocking: run it in a thread) and fans events out to pages."""

    def __init__(self, location: db.Location, batch: int = 200) -> None:
        self.location = location
        self.batch = batch
        self.last_id: int | None = None  # None: not looked yet (the alerts stored before start are not new)
        self.clients: set[asyncio.Queue[tuple[str, Any]]] = set()
        self._unreachable = False  # said once per outage, not at every poll

    def poll(self) -> list[dict[str, Any]]:
        """The alerts stored since the last call, oldest first (at most `batch`)."""
        try:
            conn = queries.open_read_only(self.location, busy_timeout_ms=500)
        except db.StoreMissingError:
            if self.last_id is None:
                self.last_id = 0  # every alert of a store that appears later is new
            return []
        except (db.StoreUnreachable, SchemaTooNew) as exc:  # a PostgreSQL server down: the next poll tries again
            if not self._unreachable:
                logger.warning("the live feed cannot read the store: %s", exc)
            self._unreachable = True
            return []
        if self._unreachable:
            logger.info("the live feed reads the store %s again", self.location)
            self._unreachable = False
        try:
            newest = queries.last_id(conn)
            if self.last_id is None or newest < self.last_id:  # first look, or another store
                self.last_id = newest
                return []
            rows = queries.after_id(conn, self.last_id, self.batch)
        except db.ERRORS:
            logger.warning("the live feed could not read the store", exc_info=True)
            return []
        finally:
            conn.close()
        if rows:
            self.last_id = rows[-1]["id"]
        return rows

    def subscribe(self) -> asyncio.Queue[tuple[str, Any]]:
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(QUEUE_EVENTS)
        self.clients.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[tuple[str, Any]]) -> None:
        self.clients.discard(queue)

    def publish(self, event: str, data: Any) -> None:
        for queue in list(self.clients):
            if queue.full():  # a page that does not keep up loses its oldest event, not the others' feed
                queue.get_nowait()
            queue.put_nowait((event, data))
