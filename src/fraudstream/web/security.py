"""Safe by default: loopback unless told, an access token beyond it, CSRF defence on writes,
and headers that keep the browser from running anything the page did not ship.

The token may come as `Authorization: Bearer <token>` (API clients, Prometheus) or once as
`/?token=<token>` on the page's address, which sets an HttpOnly, SameSite=Lax session
cookie (derived from the token, so the cookie is not the token) and redirects to `/`. Lax, not
Strict: a notification's link (a cross-site navigation from chat or email) must arrive with
the session; writes stay guarded by the CSRF double submit and the Origin check.

Before anything else the Host header must name this dashboard (loopback, its host, its public
URL's host or `dashboard.allowed_hosts`): otherwise a web site could rebind its own name to
127.0.0.1 and read the alerts and post verdicts as a same-origin page.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

import orjson
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fraudstream.config import WILDCARD_HOSTS
from fraudstream.errors import UserFacingError

logger = logging.getLogger(__name__)

SESSION_COOKIE = "fraudstream_session"
CSRF_COOKIE = "fraudstream_csrf"
CSRF_HEADER = "x-csrf-token"
MIN_TOKEN_CHARS = 16

# Scripts and styles from the page's own files only: nothing inline, nothing from elsewhere.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


class DashboardRefused(UserFacingError):
    """The dashboard would listen beyond this machine without an access token."""


def is_loopback(host: str) -> bool:
    """Whether an address reaches this machine only. A host name other than localhost is not:
    what it resolves to may change, so it is treated as beyond loopback (a token is needed)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, token: str | None) -> None:
    """Refuse a listening address beyond loopback without a usable token (one line)."""
    if token is not None and len(token.strip()) < MIN_TOKEN_CHARS:
        raise DashboardRefused(
            f"the dashboard's access token is too short: use at least {MIN_TOKEN_CHARS} characters "
            "(for example: python3 -c 'import secrets; print(secrets.token_urlsafe())')"
        )
    if not is_loopback(host) and not token:
        raise DashboardRefused(
            f"refusing to listen on {host} without an access token: other machines could read the alerts; "
            "set FRAUDSTREAM_DASHBOARD__TOKEN (or --token), or listen on 127.0.0.1"
        )


def check_rules_token(token: str | None) -> None:
    """Refuse a rules token (who may publish rule changes from the page) too short to be one."""
    if token is not None and len(token.strip()) < MIN_TOKEN_CHARS:
        raise DashboardRefused(
            f"dashboard.rules_token is too short: use at least {MIN_TOKEN_CHARS} characters "
            "(for example: python3 -c 'import secrets; print(secrets.token_urlsafe())')"
        )


def session_value(token: str) -> str:
    """What the session cookie holds: proof of the token, not the token itself."""
    return hmac.new(token.encode(), b"fraudstream-dashboard-session", hashlib.sha256).hexdigest()


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _cookies(headers: dict[bytes, bytes]) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get(b"cookie", b"").decode("latin-1"))
    except Exception:  # a malformed Cookie header is no cookie
        return {}
    return {k: m.value for k, m in jar.items()}


def _cookie(name: str, value: str, *, http_only: bool, secure: bool, same_site: str = "Strict") -> str:
    parts = [f"{name}={value}", "Path=/", f"SameSite={same_site}"]
    if http_only:
        parts.append("HttpOnly")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def host_name(value: str) -> str:
    """A Host header's name without its port or an IPv6 address's brackets, lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def allowed_hosts(host: str, public_url: str | None, more: list[str] | tuple[str, ...] = ()) -> frozenset[str]:
    """The names a request's Host may give: loopback, the listening host, the public URL's."""
    names = {*LOOPBACK_NAMES, *(host_name(h) for h in more)}
    if host.strip() not in WILDCARD_HOSTS:
        names.add(host_name(host if ":" not in host or host.startswith("[") else f"[{host}]"))
    if public_url:
        found = urlsplit(public_url).hostname
        if found:
            names.add(found.lower())
    return frozenset(names)


class Guard:
    """ASGI middleware in front of every route (pages, static files, API, events, metrics)."""

    def __init__(self, app: ASGIApp, token: str | None, hosts: frozenset[str] = frozenset(LOOPBACK_NAMES)) -> None:
        self.app = app
        self.token = token or None
        self.session = session_value(token) if token else None
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        host = host_name(headers.get(b"host", b"").decode("latin-1"))
        if host not in self.hosts:
            logger.warning("a request for host %r refused (not one of this dashboard's names)", host[:100])
            reason = f"this dashboard does not answer to Host {host[:100]!r}: add it to dashboard.allowed_hosts"
            await self._reply(send, 400, orjson.dumps({"error": reason}), "application/json")
            return
        cookies = _cookies(headers)
        path, method = scope["path"], scope["method"]
        secure = scope.get("scheme") == "https"
        extra: list[tuple[str, str]] = []
        bearer = False
        if self.token:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            if path == "/" and method == "GET" and "token" in query:
                if _same(query["token"][0], self.token):
                    assert self.session is not None
                    await self._reply(
                        send, 303, b"", "text/plain", [("location", "/"), ("set-cookie", self._session(secure))]
                    )
                else:
                    logger.warning("a wrong access token on the page's address")
                    await self._deny(send, path, "wrong access token")
                return
            bearer = self._bearer(headers)
            if not bearer and not _same(cookies.get(SESSION_COOKIE), self.session):
                await self._deny(send, path, "this dashboard needs its access token")
                return
        # A browser cannot make another site's page send an Authorization header: no CSRF there.
        if method not in ("GET", "HEAD", "OPTIONS") and not bearer:
            problem = csrf_problem(headers, cookies)
            if problem is not None:
                await self._reply(send, 403, orjson.dumps({"error": problem}), "application/json")
                return
        if path == "/" and CSRF_COOKIE not in cookies:
            extra.append(
                ("set-cookie", _cookie(CSRF_COOKIE, secrets.token_urlsafe(24), http_only=False, secure=secure))
            )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    out[name] = value
                if path.startswith("/api/") or path == "/metrics":
                    out["cache-control"] = "no-store"
                for name, value in extra:
                    out.append(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _session(self, secure: bool) -> str:
        assert self.session is not None
        return _cookie(SESSION_COOKIE, self.session, http_only=True, secure=secure, same_site="Lax")

    def _bearer(self, headers: dict[bytes, bytes]) -> bool:
        assert self.token is not None
        auth = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, value = auth.partition(" ")
        return scheme.lower() == "bearer" and _same(value.strip(), self.token)

    async def _deny(self, send: Send, path: str, reason: str) -> None:
        if path == "/":
            body = (
                f"401: {reason}. Open this page once as /?token=<access token>, "
                "or send 'Authorization: Bearer <access token>'.\n"
            ).encode()
            await self._reply(send, 401, body, "text/plain; charset=utf-8")
        else:
            await self._reply(
                send, 401, orjson.dumps({"error": reason}), "application/json", [("www-authenticate", "Bearer")]
            )

    @staticmethod
    async def _reply(
        send: Send, status: int, body: bytes, kind: str, more: list[tuple[str, str]] | None = None
    ) -> None:
        headers: list[tuple[bytes, bytes]] = [
            (b"content-type", kind.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        headers += [(k.encode(), v.encode()) for k, v in HEADERS.items()]
        headers += [(k.encode(), v.encode()) for k, v in (more or [])]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def csrf_problem(headers: dict[bytes, bytes], cookies: dict[str, str]) -> str | None:
    """Why a write does not come from the dashboard's own page, or None.

    Double submit: the page copies its CSRF cookie (SameSite=Strict, so another site's page
    neither sends nor reads it) into a header; and a browser's Origin must be this host.
    """

    def get(name: bytes) -> str:
        return headers.get(name, b"").decode("latin-1")

    origin, host = get(b"origin"), get(b"host")
    if origin and origin != "null" and urlsplit(origin).netloc != host:
        return "cross-origin request refused"
    if origin == "null" or get(b"sec-fetch-site") == "cross-site":
        return "cross-origin request refused"
    cookie = cookies.get(CSRF_COOKIE)
    if not cookie or not _same(get(CSRF_HEADER.encode()), cookie):
        return "missing or wrong CSRF token: reload the page"
    return None
