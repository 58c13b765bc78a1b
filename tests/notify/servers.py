"""Real receivers for the notification tests: an HTTP webhook and an SMTP server with
STARTTLS and a login, each in this process on a free 127.0.0.1 port, each stopped by its test."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Request:
    path: str
    body: dict[str, Any]
    at: float


class _Quiet(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # an answer to a client that gave up (the hanging test): not worth a traceback


class Webhook:
    """A Slack-style incoming webhook that records what it is posted. `fail(n)` answers the
    next n requests with 500; `hang()` holds requests unanswered until `release()`;
    `delay_s` slows every answer (the request is recorded on arrival, before the answer)."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.answered = 0
        self._failures = 0
        self._hold = threading.Event()
        self._hold.set()
        self.delay_s = 0.0
        self._lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with hook._lock:
                    fail = hook._failures > 0
                    if fail:
                        hook._failures -= 1
                    else:
                        hook.requests.append(Request(self.path, json.loads(data), time.monotonic()))
                hook._hold.wait(30)
                time.sleep(hook.delay_s)
                self.send_response(500 if fail else 200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                with hook._lock:
                    hook.answered += 1

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Quiet(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/services/T000/B000/hooksecretXYZ") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fail(self, n: int) -> None:
        with self._lock:
            self._failures = n

    def hang(self) -> None:
        self._hold.clear()

    def release(self) -> None:
        self._hold.set()

    @property
    def texts(self) -> list[str]:
        with self._lock:
            return [r.body["text"] for r in self.requests]

    def stop(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


@dataclass
class Mail:
    sender: str
    to: list[str]
    subject: str
    body: str
    authenticated: bool
    tls: bool  # the session had switched to TLS (STARTTLS)


@dataclass
class _Handler:
    mails: list[Mail] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)  # recipients answered "550 no such user"
    refused: int = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:  # noqa: N802
        if address in self.refuse:
            self.refused += 1
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        body = msg.get_body(("plain", "html"))
        text = body.get_content() if body else ""
        tls = session.ssl is not None
        self.mails.append(
            Mail(
                envelope.mail_from, list(envelope.rcpt_tos), str(msg["subject"]), text, bool(session.authenticated), tls
            )
        )
        return "250 OK"


def make_cert(folder: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 (the openssl command)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


class Smtp:
    """aiosmtpd with STARTTLS required before AUTH (LOGIN/PLAIN), checking one user and password."""

    def __init__(self, cert: Path, key: Path, user: str, password: str) -> None:
        self.handler = _Handler()
        self.logins: list[str] = []
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == user
                and auth_data.password.decode() == password
            )
            if ok:
                self.logins.append(auth_data.login.decode())
            return AuthResult(success=ok, handled=False)

        self.port = free_port()
        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, tls_context=context, require_starttls=True,
            authenticator=authenticator, auth_require_tls=True, auth_required=True,
        )  # fmt: skip
        self.controller.start()

    @property
    def mails(self) -> list[Mail]:
        return list(self.handler.mails)

    def stop(self) -> None:
        self.controller.stop()


def alert_id(text: str) -> str:
    """The alert id in a message's dashboard link (`.../#/alerts/<id>|...`)."""
    return text.split("#/alerts/")[1].split("|")[0]


def wait_until(predicate: Any, timeout: float = 10.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())
