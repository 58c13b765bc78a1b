"""The dashboard's Starlette app: routes stay thin; queries live in `store/queries.py`,
parameter checks in `params.py`, access control in `security.py`, health in `health.py`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fraudstream.config import Settings
from fraudstream.store import queries, reviews
from fraudstream.store.sqlite import StoreMissingError, connect
from fraudstream.web import params
from fraudstream.web.feed import Feed
from fraudstream.web.health import HealthCollector
from fraudstream.web.metrics import DashboardMetrics
from fraudstream.web.params import BadRequest
from fraudstream.web.security import Guard, check_bind

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
HEALTH_INTERVAL_S = 2.0
RELATED = 20  # earlier alerts of the same user (and device) shown with an alert
MAX_BUCKETS = 2_000
MAX_BODY = 16_384
T = TypeVar("T")


class JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def _item(row: dict[str, Any], review: reviews.Review | None) -> dict[str, Any]:
    """An alert as the API shows it (its details only in the full record)."""
    out = {k: v for k, v in row.items() if k != "alert_data"}
    out["review"] = review.to_dict() if review else None
    return out


def _details(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"unparsed": text}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


class Store:
    """Short-lived connections to the store, one per request, made in worker threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._has_reviews = False

    def open(self) -> sqlite3.Connection:
        conn = connect(self.path, busy_timeout_ms=2_000)
        if not self._has_reviews:
            found = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='alert_reviews'").fetchone()
            if found is None:  # a store from before triage: add its (empty) table
                conn.close()
                conn = connect(self.path, create=True, busy_timeout_ms=2_000)
            self._has_reviews = True
        return conn

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            conn = self.open()
            try:
                return work(conn)
            finally:
                conn.close()

        return await run_in_threadpool(call)


def create_app(settings: Settings, health: HealthCollector | None = None) -> Starlette:
    """The dashboard over `settings.db_path` and the job of `settings.data_dir`.

    Raises `DashboardRefused` for a listening address beyond loopback without a token."""
    d = settings.dashboard
    check_bind(d.host, d.token)
    store = Store(settings.db_path)
    feed = Feed(settings.db_path)
    collector = health or HealthCollector(settings)
    metrics = DashboardMetrics()
    state: dict[str, Any] = {"health": None}
    health_lock = asyncio.Lock()

    async def refresh_health() -> dict[str, Any]:
        async with health_lock:
            snapshot = await run_in_threadpool(collector.collect)
        state["health"] = snapshot
        s = snapshot["store"]
        if s.get("alerts") is not None:
            metrics.store_alerts.set(s["alerts"])
        behind = snapshot["copier"].get("behind")
        metrics.copier_behind.set(math.nan if behind is None else behind)
        return snapshot

    async def push_alerts() -> None:
        interval = d.push_interval_ms / 1000
        while True:
            try:
                rows = await run_in_threadpool(feed.poll)
                if rows:
                    ids = [r["alert_id"] for r in rows]
                    found = await store.run(lambda conn: reviews.latest(conn, ids))  # noqa: B023 (awaited here)
                    items = [_item(r, found.get(r["alert_id"])) for r in reversed(rows)]  # newest first
                    metrics.pushed.inc(len(items))
                    feed.publish("alerts", items)
            except Exception:  # never let one bad look end the feed
                logger.warning("the live feed could not read the store", exc_info=True)
            await asyncio.sleep(interval)

    async def push_health() -> None:
        while True:
            try:
                feed.publish("health", await refresh_health())
            except Exception:  # never let one bad snapshot end the loop
                logger.warning("pipeline health could not be collected", exc_info=True)
            await asyncio.sleep(HEALTH_INTERVAL_S)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(push_alerts()), asyncio.create_task(push_health())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await run_in_threadpool(collector.close)

    # -- routes -----------------------------------------------------------------------------

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    async def list_alerts(request: Request) -> Response:
        query = params.search(_multi(request), d.page_size)

        def work(conn: sqlite3.Connection) -> dict[str, Any]:
            rows, total = queries.search(conn, query.filter, query.page, query.page_size)
            found = reviews.latest(conn, [r["alert_id"] for r in rows])
            items = [_item(r, found.get(r["alert_id"])) for r in rows]
            return {"items": items, "page": query.page, "page_size": query.page_size, "total": total}

        try:
            return JSON(await store.run(work))
        except StoreMissingError as exc:
            return JSON({"items": [], "page": query.page, "page_size": query.page_size, "total": 0, "store": str(exc)})

    async def one_alert(request: Request) -> Response:
        params.no_params(_multi(request))
        alert_id = request.path_params["alert_id"]

        def work(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = queries.alert(conn, alert_id)
            if row is None:
                return None
            history = reviews.history(conn, alert_id)
            details = _details(row["alert_data"])
            order = {k: row[k] for k in ("transaction_id", "user_id", "device_id", "amount", "event_time")}
            if "city" in details:
                order["city"] = details["city"]
            return {
                "alert": _item(row, history[0] if history else None),
                "details": details,
                "order": order,
                "reviews": [r.to_dict() for r in history],
                "same_user": [_item(r, None) for r in queries.earlier(conn, "user_id", row["user_id"], row, RELATED)],
                "same_device": [
                    _item(r, None) for r in queries.earlier(conn, "device_id", row["device_id"], row, RELATED)
                ],
            }

        found = await store.run(work)
        if found is None:
            return JSON({"error": f"no alert {alert_id[:100]!r}"}, status_code=404)
        return JSON(found)

    async def add_review(request: Request) -> Response:
        alert_id = request.path_params["alert_id"]
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSON({"error": "send the verdict as application/json"}, status_code=415)
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSON({"error": "request body too large"}, status_code=413)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadRequest("the body is not JSON") from None
        if not isinstance(data, dict):
            raise BadRequest('the body must be a JSON object: {"verdict": ..., "note": ..., "reviewer": ...}')
        verdict, note, reviewer = data.get("verdict"), data.get("note"), data.get("reviewer")
        if not isinstance(verdict, str) or not isinstance(reviewer, str) or not isinstance(note, str | None):
            raise BadRequest("verdict and reviewer must be text, note text or null")
        note = (note.strip() or None) if note is not None else None  # an empty note is no note
        problem = reviews.check_review(verdict, note, reviewer)
        if problem is not None:
            raise BadRequest(problem)
        review = reviews.Review(alert_id, verdict, note, reviewer.strip(), int(time.time() * 1000))  # type: ignore[arg-type]
        try:
            await store.run(lambda conn: reviews.add_review(conn, review))
        except reviews.UnknownAlert:
            return JSON({"error": f"no alert {alert_id[:100]!r}"}, status_code=404)
        metrics.reviews.labels(verdict).inc()
        feed.publish("review", review.to_dict())
        return JSON({"review": review.to_dict()}, status_code=201)

    async def stats(request: Request) -> Response:
        q = params.stats(_multi(request))

        def work(conn: sqlite3.Connection) -> dict[str, Any]:
            first, last = queries.time_range(conn)
            since = q.since if q.since is not None else first
            until = q.until if q.until is not None else (None if last is None else last + 1)
            out: dict[str, Any] = {"since": since, "until": until, "bucket_ms": None, "buckets": []}
            out["by_type"], out["by_severity"] = {}, {}
            out["top_users"] = queries.top_keys(conn, "user_id", q.top, q.since, q.until)
            out["top_devices"] = queries.top_keys(conn, "device_id", q.top, q.since, q.until)
            out["dead_letters"] = queries.dead_letter_counts(conn)
            if since is None or until is None or since >= until:
                return out
            bucket = q.bucket_ms or queries.choose_bucket(until - since)
            if (until - since) / bucket > MAX_BUCKETS:
                raise BadRequest(f"bucket_ms too small for the time range (more than {MAX_BUCKETS} buckets)")
            start = since // bucket * bucket
            starts = list(range(start, until, bucket))
            out["bucket_ms"], out["buckets"] = bucket, starts
            for column, key in (("alert_type", "by_type"), ("severity", "by_severity")):
                series: dict[str, list[int]] = {}
                for row in queries.counts_over_time(conn, column, bucket, since, until):
                    series.setdefault(row["key"], [0] * len(starts))[(row["bucket"] - start) // bucket] += row["alerts"]
                out[key] = series
            return out

        try:
            return JSON(await store.run(work))
        except StoreMissingError as exc:
            return JSON(
                {"buckets": [], "by_type": {}, "by_severity": {}, "top_users": [], "top_devices": [], "store": str(exc)}
            )

    async def health_now(request: Request) -> Response:
        params.no_params(_multi(request))
        snapshot = state["health"]
        if snapshot is None or time.time() * 1000 - snapshot["time"] > 2_000 * HEALTH_INTERVAL_S:
            snapshot = await refresh_health()
        return JSON(snapshot)

    async def events(request: Request) -> Response:
        queue = feed.subscribe()

        async def stream() -> AsyncIterator[dict[str, str]]:
            metrics.sse_clients.inc()
            try:
                yield {"event": "hello", "data": orjson.dumps({"push_interval_ms": d.push_interval_ms}).decode()}
                if state["health"] is not None:
                    yield {"event": "health", "data": orjson.dumps(state["health"]).decode()}
                while True:
                    event, data = await queue.get()
                    yield {"event": event, "data": orjson.dumps(data).decode()}
            finally:
                feed.unsubscribe(queue)
                metrics.sse_clients.dec()

        return EventSourceResponse(stream(), ping=15, send_timeout=10)

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/", page),
        Route("/api/alerts", list_alerts),
        Route("/api/alerts/{alert_id}", one_alert),
        Route("/api/alerts/{alert_id}/reviews", add_review, methods=["POST"]),
        Route("/api/stats", stats),
        Route("/api/health", health_now),
        Route("/api/events", events),
        Route("/metrics", prometheus),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    async def bad_request(request: Request, exc: Exception) -> Response:
        return JSON({"error": str(exc)}, status_code=400)

    async def no_store(request: Request, exc: Exception) -> Response:
        return JSON({"error": f"no store yet: {exc}"}, status_code=404)

    async def store_error(request: Request, exc: Exception) -> Response:
        logger.warning("the store could not be read: %s", exc)
        return JSON({"error": f"the store cannot be read now: {exc}"}, status_code=503)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSON({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(_Counted, routes=routes, metrics=metrics), Middleware(Guard, token=d.token)],
        exception_handlers={
            BadRequest: bad_request,
            StoreMissingError: no_store,
            sqlite3.Error: store_error,
            HTTPException: http_error,
        },
    )
    app.state.feed = feed
    app.state.metrics = metrics
    return app


def _multi(request: Request) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        out.setdefault(key, []).append(value)
    return out


class _Counted:
    """Counts every response by route (its template, never the raw path) and status code."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute], metrics: DashboardMetrics) -> None:
        self.app = app
        self.routes = routes
        self.metrics = metrics

    def _route(self, scope: Scope) -> str:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return getattr(route, "path", "other")
        return "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self._route(scope)

        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.requests.labels(route, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting)
