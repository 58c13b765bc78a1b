"""`fraudstream dashboard`: the analysts' web page over the store and the running job."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

import click

from fraudstream.cli.app import UserError, resolve_settings
from fraudstream.cli.options import Command
from fraudstream.config import WILDCARD_HOSTS

logger = logging.getLogger(__name__)


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, made here so that port 0's choice is known before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(
            f"cannot listen on {host}:{port}: {exc.strerror} (choose another with --port, or --port 0 for any free one)"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _server(config: Any) -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, but Ctrl-C and SIGTERM end the command with status 0 after a
        graceful stop (uvicorn re-raises the signal once stopped, which kills the process)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield  # signals reach the main thread only (a dashboard served from a thread)
                return
            signals = (signal.SIGINT, signal.SIGTERM)
            previous = {s: signal.signal(s, self.handle_exit) for s in signals}
            try:
                yield
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler)

    return Server(config)


@click.command(cls=Command)
@click.option("--host", help="Address to listen on [dashboard.host: 127.0.0.1]; any other needs an access token.")
@click.option("--port", type=click.IntRange(0, 65535), help="Port [dashboard.port: 8050]; 0 = any free port.")
@click.option(
    "--token",
    help="Access token every request must carry (prefer the environment: FRAUDSTREAM_DASHBOARD__TOKEN; "
    "a flag is visible to other users in the process list).",
)
@click.pass_context
def dashboard(ctx: click.Context, host: str | None, port: int | None, token: str | None) -> None:
    """Serve the dashboard: live alerts, charts, search, triage and pipeline health.

    \b
    It reads the store (<data-dir>/fraud_alerts.db) and the running job's REST API, and
    works without a job (it says so). It listens on 127.0.0.1 unless told otherwise; on any
    other address it refuses to start without an access token, which every request must
    then carry (open the page once as http://HOST:PORT/?token=TOKEN). Ctrl-C stops it.
    """
    import uvicorn

    from fraudstream.cli.logs import configure_logging
    from fraudstream.store.db import Location
    from fraudstream.web import create_app

    settings = resolve_settings(ctx, **{"dashboard.host": host, "dashboard.port": port, "dashboard.token": token})
    configure_logging(settings)
    app = create_app(settings)  # refuses a wide address without a token, before listening
    d = settings.dashboard
    sock = _listen(d.host, d.port)
    d = d.model_copy(update={"port": sock.getsockname()[1]})
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=2, server_header=False
    )
    click.echo(f"Dashboard: {d.url}/" + (" (open it once with ?token=<access token>)" if d.token else ""))
    store = Location.of(settings)  # a PostgreSQL URL's password masked
    click.echo(f"  listening on {d.host}:{d.port}, store {store}; Ctrl-C stops it", err=True)
    if d.host in WILDCARD_HOSTS and not d.allowed_hosts and not d.public_url:
        click.echo(
            "  it answers only to loopback names: set dashboard.allowed_hosts (or public_url) to the names "
            "other machines reach it by",
            err=True,
        )
    logger.info("dashboard on %s:%d", d.host, d.port)
    try:
        _server(config).run(sockets=[sock])
    finally:
        sock.close()
    click.echo("Dashboard stopped", err=True)
