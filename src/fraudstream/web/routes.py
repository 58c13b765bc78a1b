"""The dashboard's routes: thin handlers over the store's queries (`store/queries.py`), the
checked parameters (`params.py`), the live feed and the health collector. Blocking work (the
store, SQLite or PostgreSQL; the job's REST API; the broker) runs in worker threads, never on
the event loop."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from fraudstream.config import Settings
from fraudstream.detectors.risk import describe
from fraudstream.features.spec import FEATURES
from fraudstream.rules.model import RuleError
from fraudstream.store import db, queries, reviews
from fraudstream.store.db import Connection, StoreMissingError
from fraudstream.store.schema import check_version
from fraudstream.store.sqlite import ensure_reviews
from fraudstream.web import orders, params
from fraudstream.web.feed import Feed
from fraudstream.web.health import HealthCollector
from fraudstream.web.metrics import DashboardMetrics
from fraudstream.web.params import BadRequest
from fraudstream.web.rules import Refused, RulesPanel

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
HEALTH_INTERVAL_S = 2.0
# A snapshot older than two intervals means the health loop is stuck or has not run: ask anew.
HEALTH_STALE_MS = 2 * HEALTH_INTERVAL_S * 1000
REPLAY_MAX = 500  # alerts sent again to a page that reconnects (Last-Event-ID); older ones it misses
RELATED = 20  # earlier alerts of the same user (and device) shown with an alert
REASON_NUMBERS = ("value", "usual", "raised_by")
MAX_BUCKETS = 2_000
MAX_BODY = 16_384
T = TypeVar("T")


class JSON(JSONResponse):
    """orjson, with OPT_NON_STR_KEYS: the charts' series and a rule's details may be keyed by
    numbers (bucket starts, counts), which the standard encoder would refuse or turn to text."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def item(row: dict[str, Any], review: reviews.Review | None) -> dict[str, Any]:
    """An alert as the API shows it (its details only in the full record)."""
    out = {k: v for k, v in row.items() if k != "alert_data"}
    out["review"] = review.to_dict() if review else None
    return out


def details(text: str | None) -> dict[str, Any]:
    """A rule's details (the alert_data column, JSON) as an object for the page, whatever the
    store holds: a row written by hand or by an older version may hold no JSON, or a bare value,
    and the page must still open the alert rather than fail on it."""
    if not text:
        return {}
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"unparsed": text}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def risk_reasons(rule: dict[str, Any]) -> list[dict[str, Any]]:
    """An ACCOUNT_TAKEOVER's reasons (the features that raised its order's risk), each with
    the analyst's words for it (`detectors.risk.describe`). Only well-formed ones: the details
    may come from any producer on the alerts topic."""
    found = rule.get("reasons")
    if not isinstance(found, list):
        return []
    out = []
    for r in found:
        if not isinstance(r, dict) or not isinstance(r.get("feature"), str):
            continue
        if not all(isinstance(r.get(k), int | float) and not isinstance(r.get(k), bool) for k in REASON_NUMBERS):
            continue
        reason = {"feature": r["feature"], **{k: r[k] for k in REASON_NUMBERS}}
        if r["feature"] in FEATURES:
            text = describe(reason)  # type: ignore[arg-type]
        else:  # not through describe(), which would read a foreign name as a format string
            text = f"{r['feature']} {r['value']:g}"
        out.append({**reason, "text": text})
    return out


def _multi(request: Request) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        out.setdefault(key, []).append(value)
    return out


def latest_reviews(conn: Connection, alert_ids: list[str]) -> dict[str, reviews.Review]:
    """The verdicts in force; none in a store from before triage (no alert_reviews table)."""
    return reviews.latest(conn, alert_ids) if conn.has_table("alert_reviews") else {}


def review_history(conn: Connection, alert_id: str) -> list[reviews.Review]:
    return reviews.history(conn, alert_id) if conn.has_table("alert_reviews") else []


async def _json_body(request: Request, shape: str) -> dict[str, Any]:
    """A write's body: a JSON object of at most MAX_BODY bytes (BadRequest otherwise)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise HTTPException(415, "send the body as application/json")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(413, "request body too large")
    try:
        data = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        raise BadRequest("the body is not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object: {shape}")
    return data


def _rules_token(request: Request, data: dict[str, Any]) -> str | None:
    """The rules token, from the X-Rules-Token header or the body's rules_token field."""
    given = request.headers.get("x-rules-token")
    if given is None and isinstance(data.get("rules_token"), str):
        given = data["rules_token"]
    return given


class Store:
    """Short-lived connections to the store (SQLite, or PostgreSQL with store.url), one per
    request, made in worker threads: read-only for reading (no lock next to the copier,
    nothing created), writable for a verdict only."""

    def __init__(self, location: db.Location) -> None:
        self.location = location

    def open(self) -> Connection:
        return queries.open_read_only(self.location, busy_timeout_ms=2_000)

    def open_for_review(self) -> Connection:
        conn = db.connect(self.location, busy_timeout_ms=2_000)
        try:
            if not conn.has_table("fraud_alerts"):
                raise StoreMissingError(f"{self.location} has no fraud_alerts table: run 'fraudstream run' first")
            check_version(conn)
            ensure_reviews(conn)  # a SQLite store from before triage: its table (nothing else)
        except BaseException:
            conn.close()
            raise
        return conn

    async def run(self, work: Callable[[Connection], T], write: bool = False) -> T:
        def call() -> T:
            conn = self.open_for_review() if write else self.open()
            try:
                return work(conn)
            finally:
                conn.close()

        return await run_in_threadpool(call)


class Dashboard:
    """The handlers and the two background loops (new alerts, health) of one app."""

    def __init__(self, settings: Settings, collector: HealthCollector, metrics: DashboardMetrics) -> None:
        self.settings = settings
        location = db.Location.of(settings)
        self.store = Store(location)
        self.feed = Feed(location)
        self.collector = collector
        self.metrics = metrics
        self.health: dict[str, Any] | None = None
        self._health_lock = asyncio.Lock()
        self.rules = RulesPanel(settings)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.page),
            Route("/api/alerts", self.list_alerts),
            Route("/api/alerts/{alert_id}", self.one_alert),
            Route("/api/alerts/{alert_id}/reviews", self.add_review, methods=["POST"]),
            Route("/api/stats", self.stats),
            Route("/api/health", self.health_now),
            Route("/api/events", self.events),
            Route("/api/rules", self.rules_now),
            Route("/api/rules/proposals", self.propose, methods=["POST"]),
            Route("/api/rules/proposals/{proposal_id}", self.proposal),
            Route("/api/rules/proposals/{proposal_id}/publish", self.publish, methods=["POST"]),
            Route("/metrics", self.prometheus),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]

    # -- background ---------------------------------------------------------------------------

    async def refresh_health(self) -> dict[str, Any]:
        async with self._health_lock:
            snapshot = await run_in_threadpool(self.collector.collect)
        self.health = snapshot
        alerts = snapshot["store"].get("alerts")
        if alerts is not None:
            self.metrics.store_alerts.set(alerts)
        behind = snapshot["copier"].get("behind")
        self.metrics.copier_behind.set(math.nan if behind is None else behind)
        return snapshot

    async def push_alerts(self) -> None:
        """Every push interval, the alerts stored since the last look go to every page."""
        interval = self.settings.dashboard.push_interval_ms / 1000
        while True:
            try:
                rows = await run_in_threadpool(self.feed.poll)
                if rows:
                    ids = [r["alert_id"] for r in rows]
                    found = await self.store.run(lambda conn: latest_reviews(conn, ids))  # noqa: B023 (awaited here)
                    items = [item(r, found.get(r["alert_id"])) for r in reversed(rows)]  # newest first
                    self.metrics.pushed.inc(len(items))
                    self.feed.publish("alerts", items)
            except Exception:  # never let one bad look end the feed
                logger.warning("the live feed could not read the store", exc_info=True)
            await asyncio.sleep(interval)

    async def push_health(self) -> None:
        while True:
            try:
                self.feed.publish("health", await self.refresh_health())
            except Exception:  # never let one bad snapshot end the loop
                logger.warning("pipeline health could not be collected", exc_info=True)
            await asyncio.sleep(HEALTH_INTERVAL_S)

    # -- routes -------------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    async def list_alerts(self, request: Request) -> Response:
        query = params.search(_multi(request), self.settings.dashboard.page_size)

        def work(conn: Connection) -> dict[str, Any]:
            found = queries.search(conn, query.filter, query.page, query.page_size, query.sort)
            verdicts = latest_reviews(conn, [r["alert_id"] for r in found.rows])
            items = [item(r, verdicts.get(r["alert_id"])) for r in found.rows]
            return {
                "items": items,
                "page": query.page,
                "page_size": query.page_size,
                "total": found.total,
                "max_id": found.max_id,
            }

        try:
            return JSON(await self.store.run(work))
        except StoreMissingError as exc:
            return JSON({"items": [], "page": query.page, "page_size": query.page_size, "total": 0, "store": str(exc)})

    async def one_alert(self, request: Request) -> Response:
        params.no_params(_multi(request))
        alert_id = request.path_params["alert_id"]

        def work(conn: Connection) -> dict[str, Any] | None:
            row = queries.alert(conn, alert_id)
            if row is None:
                return None
            history = review_history(conn, alert_id)
            rule = details(row["alert_data"])
            # What the store knows of the order; the archive's full record replaces it below.
            order = {k: row[k] for k in ("transaction_id", "user_id", "device_id", "amount", "event_time")}
            if "city" in rule:
                order["city"] = rule["city"]
            return {
                "row": row,
                "alert": item(row, history[0] if history else None),
                "details": rule,
                "reasons": risk_reasons(rule),
                "order": order,
                "reviews": [r.to_dict() for r in history],
                "same_user": [item(r, None) for r in queries.earlier(conn, "user_id", row["user_id"], row, RELATED)],
                "same_device": [
                    item(r, None) for r in queries.earlier(conn, "device_id", row["device_id"], row, RELATED)
                ],
            }

        found = await self.store.run(work)
        if found is None:
            return JSON({"error": f"no alert {alert_id[:100]!r}"}, status_code=404)
        row = found.pop("row")
        # Parquet files, read in a worker thread; only the hour partitions the alert can reach.
        archived = await run_in_threadpool(orders.for_alert, self.settings, row, found["details"])
        if archived["order"] is not None:
            found["order"] = archived["order"]
        found["archive"], found["orders"] = archived["archive"], archived["orders"]
        return JSON(found)

    async def add_review(self, request: Request) -> Response:
        alert_id = request.path_params["alert_id"]
        data = await _json_body(request, '{"verdict": ..., "note": ..., "reviewer": ...}')
        verdict, note, reviewer = data.get("verdict"), data.get("note"), data.get("reviewer")
        if not isinstance(verdict, str) or not isinstance(reviewer, str) or not isinstance(note, str | None):
            raise BadRequest("verdict and reviewer must be text, note text or null")
        note = (note.strip() or None) if note is not None else None  # an empty note is no note
        problem = reviews.check_review(verdict, note, reviewer)
        if problem is not None:
            raise BadRequest(problem)
        review = reviews.Review(alert_id, verdict, note, reviewer.strip(), int(time.time() * 1000))  # type: ignore[arg-type]
        try:
            await self.store.run(lambda conn: reviews.add_review(conn, review), write=True)
        except reviews.UnknownAlert:
            return JSON({"error": f"no alert {alert_id[:100]!r}"}, status_code=404)
        self.metrics.reviews.labels(verdict).inc()
        self.feed.publish("review", review.to_dict())
        return JSON({"review": review.to_dict()}, status_code=201)

    # -- the rules: in force, history, proposals (web/rules.py) ----------------------------------

    async def rules_now(self, request: Request) -> Response:
        params.no_params(_multi(request))
        return JSON(await self.rules.snapshot())

    async def propose(self, request: Request) -> Response:
        data = await _json_body(request, '{"changes": "KEY=VALUE ...", "comment": ..., "author": ...}')
        try:
            proposal = await self.rules.propose(data, _rules_token(request, data))
        except Refused as exc:
            return JSON({"error": str(exc)}, status_code=exc.status)
        except RuleError as exc:
            return JSON({"error": str(exc), "field": "changes"}, status_code=400)
        return JSON({"proposal": proposal.view(self.rules.own)}, status_code=202)

    async def proposal(self, request: Request) -> Response:
        params.no_params(_multi(request))
        found = self.rules.proposals.get(request.path_params["proposal_id"])
        if found is None:
            return JSON({"error": "no such proposal"}, status_code=404)
        return JSON({"proposal": found.view(self.rules.own)})

    async def publish(self, request: Request) -> Response:
        data = await _json_body(request, '{"rules_token": ...}')
        try:
            proposal = await self.rules.publish(request.path_params["proposal_id"], _rules_token(request, data))
        except Refused as exc:
            return JSON({"error": str(exc)}, status_code=exc.status)
        return JSON({"proposal": proposal.view(self.rules.own)})

    async def stats(self, request: Request) -> Response:
        q = params.stats(_multi(request))

        def work(conn: Connection) -> dict[str, Any]:
            first, last = queries.time_range(conn)
            since = q.since if q.since is not None else first
            until = q.until if q.until is not None else (None if last is None else last + 1)
            out: dict[str, Any] = {"since": since, "until": until}
            if since is None or until is None or since >= until:
                out.update(bucket_ms=None, buckets=[], by_type={}, by_severity={})
            else:
                bucket = q.bucket_ms or queries.choose_bucket(until - since)
                if (until - since) / bucket > MAX_BUCKETS:
                    raise BadRequest(f"bucket_ms too small for the time range (more than {MAX_BUCKETS} buckets)")
                out.update(queries.timeline(conn, bucket, since, until))
            out["top_users"] = queries.top_keys(conn, "user_id", q.top, q.since, q.until)
            out["top_devices"] = queries.top_keys(conn, "device_id", q.top, q.since, q.until)
            out["dead_letters"] = queries.dead_letter_counts(conn)
            return out

        try:
            return JSON(await self.store.run(work))
        except StoreMissingError as exc:
            empty = {"buckets": [], "by_type": {}, "by_severity": {}, "top_users": [], "top_devices": []}
            return JSON({**empty, "store": str(exc)})

    async def health_now(self, request: Request) -> Response:
        params.no_params(_multi(request))
        snapshot = self.health
        if snapshot is None or time.time() * 1000 - snapshot["time"] > HEALTH_STALE_MS:
            snapshot = await self.refresh_health()
        return JSON(snapshot)

    async def replay(self, after: int) -> list[dict[str, Any]]:
        """The alerts stored after row `after` (at most REPLAY_MAX, the newest), newest first."""

        def work(conn: Connection) -> list[dict[str, Any]]:
            rows = queries.after_id(conn, max(after, queries.last_id(conn) - REPLAY_MAX), REPLAY_MAX)
            verdicts = latest_reviews(conn, [r["alert_id"] for r in rows])
            return [item(r, verdicts.get(r["alert_id"])) for r in reversed(rows)]

        try:
            return await self.store.run(work)
        except StoreMissingError:
            return []

    async def events(self, request: Request) -> Response:
        last_event = request.headers.get("last-event-id", "").strip()
        after = int(last_event) if last_event.isdigit() else params.feed_after(_multi(request))
        if len(self.feed.clients) >= self.settings.dashboard.max_sse_clients:
            return JSON({"error": "too many live-feed connections; try again later"}, status_code=503)
        hello = {"push_interval_ms": self.settings.dashboard.push_interval_ms}

        async def stream() -> AsyncIterator[dict[str, str]]:
            # Each alerts event carries the id of its newest row: a page that reconnects says
            # the last one it got (Last-Event-ID, or `after` from a new EventSource), and first
            # receives what it missed meanwhile. Subscribed here, not before the response: a
            # client gone before the stream starts must not keep a place under the cap.
            queue = self.feed.subscribe()
            self.metrics.sse_clients.inc()
            sent = after
            try:
                yield {"event": "hello", "data": orjson.dumps(hello).decode()}
                if after is not None:
                    missed = await self.replay(after)
                    if missed:
                        sent = missed[0]["id"]
                        yield {"event": "alerts", "data": orjson.dumps(missed).decode(), "id": str(sent)}
                if self.health is not None:
                    yield {"event": "health", "data": orjson.dumps(self.health).decode()}
                while True:
                    event, data = await queue.get()
                    if event == "alerts":
                        if sent is not None:  # not again what the replay sent
                            data = [a for a in data if a["id"] > sent]
                            if not data:
                                continue
                        sent = data[0]["id"]
                        yield {"event": event, "data": orjson.dumps(data).decode(), "id": str(sent)}
                    else:
                        yield {"event": event, "data": orjson.dumps(data).decode()}
            finally:
                self.feed.unsubscribe(queue)
                self.metrics.sse_clients.dec()

        return EventSourceResponse(stream(), ping=15, send_timeout=10)

    async def prometheus(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)
