"""Where messages go, built from `NotifySettings`, and how they are sent: apprise
(https://github.com/caronc/apprise) speaks to each service by URL.

- `notify.webhook_url`, a Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat ...):
  posted as `{"text": ...}` (the one field they all read) through apprise's JSON notifier,
  whose payload can be renamed and trimmed (`:message=text`, `:title=` ...).
- `notify.smtp_*`: email through apprise's `mailto://`, STARTTLS and a login.
- `notify.urls`: any other apprise URL, given plain text that apprise adapts to the service.

Receiver URLs carry secrets (a webhook's path is its key). They live only here; receivers
are named by a hash of their address (`webhook-1a2b3c4d`, `email-...` per recipient,
`apprise-...`) everywhere else, in the store, in metrics, in logs: a name stays with its
receiver when the list is reordered, and says nothing secret. `SecretFilter` masks the
fragments `secret_fragments` finds in every URL in whatever apprise and urllib3 log.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import apprise

from fraudstream.config import NotifySettings
from fraudstream.errors import UserFacingError
from fraudstream.notify.message import Message, Style

logger = logging.getLogger(__name__)
# apprise logs receiver URLs at debug level, and urllib3 the path of every request it makes
# (a webhook's path is its key): both get a SecretFilter while a sender exists.
LEAKY_LOGGERS = ("apprise", "urllib3.connectionpool")
# The JSON notifier's own fields, all but the message dropped; the message is Slack's `text`.
_SLACK_PAYLOAD = {":message": "text", ":title": "", ":version": "", ":attachments": "", ":type": ""}


class ReceiverError(UserFacingError):
    """A receiver is set up wrongly (never says its URL: it is a secret)."""


@dataclass(frozen=True)
class Receiver:
    name: str
    style: Style
    url: str = field(repr=False)  # secret
    secrets: tuple[str, ...] = field(default=(), repr=False)
    kind: Literal["webhook", "email", "apprise"] = "apprise"
    where: str = ""  # the setting it comes from, for a one-line error


def receiver_name(kind: str, address: str) -> str:
    """`kind-<8 hex of sha256(address)>`: stable across reorderings, no secret in it."""
    return f"{kind}-{hashlib.sha256(address.encode()).hexdigest()[:8]}"


def secret_fragments(urls: Iterable[str], passwords: Iterable[str | None] = ()) -> tuple[str, ...]:
    """What of these URLs may show up in a log line and must be masked: each URL whole, its
    password, path, query and path segments of 8+ characters (a webhook's key is one; apprise
    and urllib3 log the path they post to), plain and percent-decoded."""
    out: list[str] = [p for p in passwords if p]
    for url in urls:
        out.append(url)
        try:
            parts = urlsplit(url)
            password = parts.password
        except ValueError:  # not a URL we can take apart: the whole of it is masked
            continue
        out += [password or "", parts.path, parts.query]
        out += [seg for seg in parts.path.split("/") if len(seg) >= 8]
    out += [quote(s, safe="") for s in list(out)] + [unquote(s) for s in list(out)]
    return tuple(sorted({s for s in out if s and s != "/"}, key=len, reverse=True))


def _common(settings: NotifySettings) -> dict[str, str]:
    timeout = f"{settings.timeout_s:g}"
    return {"cto": timeout, "rto": timeout, "verify": "yes" if settings.tls_verify else "no"}


def webhook_receiver(url: str, settings: NotifySettings) -> Receiver:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ReceiverError(
            "notify.webhook_url must be an http(s):// URL of a Slack-compatible incoming webhook "
            "(other services: notify.urls with an apprise URL)"
        )
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    query = {**_SLACK_PAYLOAD, **{f"-{k}": v for k, v in parse_qsl(parts.query, keep_blank_values=True)}}
    query.update(_common(settings))
    scheme = "jsons" if parts.scheme == "https" else "json"
    apprise_url = f"{scheme}://{netloc}{parts.path or '/'}?{urlencode(query)}"
    return Receiver(
        receiver_name("webhook", url), "slack", apprise_url, secret_fragments([url, apprise_url]), "webhook",
        "notify.webhook_url",
    )  # fmt: skip


def email_receivers(settings: NotifySettings) -> list[Receiver]:
    """One receiver per recipient, each with its own position: apprise remembers which
    recipients of a call took a message only within that call, so one refused address in a
    shared receiver would repeat every retry to all the others."""
    if not settings.email_to:
        raise ReceiverError("notify.smtp_host is set but notify.email_to is empty: whom should email go to?")
    sender = settings.email_from or (settings.smtp_username if "@" in (settings.smtp_username or "") else None)
    if not sender:
        raise ReceiverError("email needs a sender: set notify.email_from")
    login = ""
    if settings.smtp_username:
        login = quote(settings.smtp_username, safe="")
        if settings.smtp_password:
            login += ":" + quote(settings.smtp_password, safe="")
        login += "@"
    host = settings.smtp_host or ""
    out = []
    for address in dict.fromkeys(settings.email_to):  # a recipient listed twice is mailed once
        query = {
            "smtp": host,
            "mode": "starttls" if settings.smtp_starttls else "insecure",
            "from": sender,
            "to": address,
            **_common(settings),
        }
        url = f"mailto://{login}{host}:{settings.smtp_port}?{urlencode(query)}"
        secrets = secret_fragments([url], [settings.smtp_password])
        out.append(
            Receiver(receiver_name("email", address), "plain", url, secrets, "email", f"notify.email_to {address}")
        )
    return out


def receivers(settings: NotifySettings) -> list[Receiver]:
    """Every configured receiver; a wrongly set one is a `ReceiverError`, one line."""
    out = []
    if settings.webhook_url:
        out.append(webhook_receiver(settings.webhook_url, settings))
    if settings.smtp_host:
        out += email_receivers(settings)
    for i, url in enumerate(dict.fromkeys(settings.urls), 1):
        out.append(
            Receiver(
                receiver_name("apprise", url), "plain", url, secret_fragments([url]), "apprise", f"notify.urls item {i}"
            )
        )
    return out


class SecretFilter(logging.Filter):
    """Masks receiver secrets in log records (apprise logs URLs at debug level)."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        # longest first, so that a URL is masked whole rather than around its path
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a record whose arguments do not format: leave it to logging
            return True
        clean = self.redact(text)
        if clean != text:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class Sender:
    """Sends messages to one receiver through apprise. `send` returns whether the receiver
    accepted the message; it never raises and never takes longer than about the timeout."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        # before apprise first sees the URL: it may log it
        self._filter = SecretFilter(receiver.secrets)
        for name in LEAKY_LOGGERS:
            logging.getLogger(name).addFilter(self._filter)
        # service_timeout=0: apprise then sends in this thread rather than in its process-wide
        # pool, where a hanging receiver's abandoned calls would hold up every other receiver.
        # The URL's cto/rto bound each network wait; nothing is kept on disk.
        try:
            asset = apprise.AppriseAsset(storage_mode="memory", service_timeout=0)
            self._apprise = apprise.Apprise(asset=asset)
            if not self._apprise.add(receiver.url):
                raise ReceiverError(
                    f"receiver {receiver.name} ({receiver.where}): apprise does not accept its URL (check its form)"
                )
        except BaseException:
            self.close()
            raise
        if receiver.kind == "email":
            # apprise spaces a plugin's sends 5.5 s apart unless the plugin says otherwise (email
            # does not); the burst rules already bound how often we write, and a stop's drain
            # should not take half a minute for five messages.
            for plugin in self._apprise:
                plugin.request_rate_per_sec = 0

    def redact(self, text: str) -> str:
        return self._filter.redact(text)

    def close(self) -> None:
        """Idempotent: a worker that failed to start closes its sender too."""
        for name in LEAKY_LOGGERS:
            logging.getLogger(name).removeFilter(self._filter)

    def send(self, message: Message) -> bool:
        try:
            return bool(
                self._apprise.notify(body=message.body, title=message.title, body_format=apprise.NotifyFormat.TEXT)
            )
        except Exception as exc:  # a plugin's own failure is a failed send, not a dead thread
            logger.warning("receiver %s: sending failed (%s)", self.receiver.name, type(exc).__name__)
            return False
