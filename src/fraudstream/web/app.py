"""The dashboard's Starlette app: its routes (`routes.py`) behind access control and security
headers (`security.py`) and a request counter, with the live feed and the health loop running
for as long as the app does."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fraudstream.config import Settings
from fraudstream.store import db
from fraudstream.store.schema import SchemaTooNew
from fraudstream.web.health import HealthCollector
from fraudstream.web.metrics import DashboardMetrics
from fraudstream.web.params import BadRequest
from fraudstream.web.routes import JSON, Dashboard
from fraudstream.web.security import Guard, allowed_hosts, check_bind, check_rules_token

logger = logging.getLogger(__name__)


def create_app(settings: Settings, health: HealthCollector | None = None) -> Starlette:
    """The dashboard over the store of `settings` (SQLite at db_path, or PostgreSQL at
    store.url) and the job of `settings.data_dir`.

    Raises `DashboardRefused` for a listening address beyond loopback without a token."""
    d = settings.dashboard
    check_bind(d.host, d.token)
    check_rules_token(d.rules_token)
    metrics = DashboardMetrics()
    dashboard = Dashboard(settings, health or HealthCollector(settings), metrics)
    routes = dashboard.routes()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(dashboard.push_alerts()), asyncio.create_task(dashboard.push_health())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await dashboard.rules.close()
            await run_in_threadpool(dashboard.collector.close)

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(_Counted, routes=routes, metrics=metrics),
            Middleware(Guard, token=d.token, hosts=allowed_hosts(d.host, d.public_url, d.allowed_hosts)),
        ],
        exception_handlers={
            BadRequest: _bad_request,
            db.StoreMissingError: _no_store,
            db.StoreUnreachable: _store_error,
            SchemaTooNew: _store_too_new,
            **dict.fromkeys(db.ERRORS, _store_error),  # sqlite3's and psycopg's
            HTTPException: _http_error,
        },
    )
    app.state.dashboard = dashboard
    return app


async def _bad_request(request: Request, exc: Exception) -> Response:
    return JSON({"error": str(exc)}, status_code=400)


async def _no_store(request: Request, exc: Exception) -> Response:
    return JSON({"error": f"no store yet: {exc}"}, status_code=404)


async def _store_error(request: Request, exc: Exception) -> Response:
    # The database's own text names files, servers and SQL: for the log, not for whoever asked.
    logger.warning("the store could not be read: %s", exc)
    return JSON({"error": "the store cannot be read now: try again shortly"}, status_code=503)


async def _store_too_new(request: Request, exc: Exception) -> Response:
    return JSON({"error": str(exc)}, status_code=503)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSON({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


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
