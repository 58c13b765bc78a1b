"""The dashboard's rules panel and proposals: the rules in force and their history, read from
the rules topic (`fraudstream.rules.topic`, blocking Kafka reads run in a worker thread and
cached a few seconds), and a change an authorised analyst proposes: checked like `rules set`,
backtested (`fraudstream.rules.trial`, one at a time, in the background: it takes tens of
seconds to minutes) and published only when the analyst confirms what the backtest showed.

Pure glue: the checks are `RuleSet.with_changes`, the backtest and the publishing are the rules
package's; here are only the HTTP shapes, the cache and the one-at-a-time bookkeeping."""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool

from fraudstream.config import Settings
from fraudstream.errors import UserFacingError
from fraudstream.rules.model import Limits, RuleError, RuleSet

logger = logging.getLogger(__name__)

CACHE_S = 5.0  # how long one read of the rules topic answers the panel
READ_TIMEOUT_S = 3.0  # a broker that does not answer in this long is reported as unreachable
MAX_CHANGES = 20
MAX_TEXT = 500
PROGRESS_LINES = 200  # the trial's progress lines a proposal keeps


class Refused(Exception):
    """A proposal the server will not take: `status` and a one-line reason for the page."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def ruleset_view(rs: RuleSet, base: RuleSet | None = None) -> dict[str, Any]:
    """A version as the page shows it; with `base` (the settings' own rules), each value that differs."""
    own = dict(base.items()) if base is not None else {}
    return {
        "version": rs.version,
        "author": rs.author,
        "created_at": rs.created_at or None,
        "comment": rs.comment,
        "reverts": rs.reverts,
        "effective_from": rs.effective_from,
        "changes": list(rs.changes),
        "items": [
            {"key": k, "value": v, **({"settings": own[k], "differs": own[k] != v} if k in own else {})}
            for k, v in rs.items()
        ],
    }


def trial_view(found: Any) -> Any:
    """The backtest's result as JSON-ready data: its own `to_dict()`, else its fields; whatever
    orjson cannot write (a set, a path) as text, so the page always gets the result."""
    if hasattr(found, "to_dict"):
        found = found.to_dict()
    elif dataclasses.is_dataclass(found) and not isinstance(found, type):
        found = dataclasses.asdict(found)
    return orjson.loads(orjson.dumps(found, default=str, option=orjson.OPT_NON_STR_KEYS))


def parse_changes(given: Any) -> dict[str, Any]:
    """The proposal's changes: an object {key: value}, or text of KEY=VALUE lines (or words)."""
    if isinstance(given, str):
        out: dict[str, Any] = {}
        for part in given.replace(",", "\n").split():
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise RuleError(f"say each change as KEY=VALUE, e.g. velocity.threshold=5 (not {part[:60]!r})")
            out[key.strip()] = value.strip()
        given = out
    if not isinstance(given, Mapping) or not given:
        raise RuleError("no change given: say KEY=VALUE, e.g. velocity.threshold=5")
    if len(given) > MAX_CHANGES:
        raise RuleError(f"at most {MAX_CHANGES} changes at once")
    for key, value in given.items():
        if not isinstance(key, str) or isinstance(value, Mapping | list):
            raise RuleError("each change is a key and a plain value")
    return dict(given)


def token_ok(given: str | None, expected: str | None) -> bool:
    """Constant-time check of the rules token (never accepted when none is configured)."""
    return bool(expected) and given is not None and hmac.compare_digest(given.encode(), expected.encode())  # type: ignore[union-attr]


@dataclasses.dataclass
class Proposal:
    id: str
    candidate: RuleSet
    base_version: int
    hours: float
    state: str = "running"  # running | done | failed | published
    progress: list[str] = dataclasses.field(default_factory=list)
    result: Any = None
    error: str | None = None
    started: int = dataclasses.field(default_factory=lambda: int(time.time() * 1000))

    def view(self, base: RuleSet | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "base_version": self.base_version,
            "hours": self.hours,
            "candidate": ruleset_view(self.candidate, base),
            "progress": list(self.progress),
            "result": self.result,
            "error": self.error,
            "started": self.started,
        }


class RulesPanel:
    """The panel's reads (cached) and the proposals of one dashboard (one trial at a time)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # The panel waits for a broker briefly (kafka.connect_timeout_s is for the job's start).
        kafka = settings.kafka.model_copy(
            update={"connect_timeout_s": min(settings.kafka.connect_timeout_s, READ_TIMEOUT_S)}
        )
        self._reading = settings.model_copy(update={"kafka": kafka})
        self.limits = Limits.from_settings(settings)
        self.own = RuleSet.from_settings(settings)
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._lock = asyncio.Lock()
        self.proposals: dict[str, Proposal] = {}
        self._running: Proposal | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._progress_lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.settings.dashboard.rules_token)

    # -- reading ----------------------------------------------------------------------------------

    def _read(self) -> Any:
        from fraudstream.rules import topic

        return topic.read_history(self._reading, timeout_s=READ_TIMEOUT_S)

    async def snapshot(self, fresh: bool = False) -> dict[str, Any]:
        """The rules in force and their history, or why they cannot be read (the rest of the
        dashboard works without a broker)."""
        async with self._lock:
            if not fresh and self._cached is not None and time.monotonic() - self._cached[0] < CACHE_S:
                return self._cached[1]
            out: dict[str, Any] = {
                "topic": self.settings.rules.topic,
                "proposing": self.enabled,
                "settings": ruleset_view(self.own),
            }
            try:
                history = await run_in_threadpool(self._read)
            except (UserFacingError, ImportError) as exc:
                out.update(state="unavailable", message=f"the rules topic cannot be read: {exc}")
            except Exception as exc:  # a client library's own error: for the log, said briefly
                logger.warning("the rules topic could not be read", exc_info=True)
                out.update(state="unavailable", message=f"the rules topic cannot be read: {type(exc).__name__}")
            else:
                current = history.latest or self.own
                out.update(
                    state="ok",
                    topic_exists=getattr(history, "topic_exists", True),
                    current=ruleset_view(current, self.own),
                    history=[ruleset_view(v) for v in reversed(history.versions)],
                    rejected=[{"offset": o, "reason": r} for o, r in history.rejected],
                )
            self._cached = (time.monotonic(), out)
            return out

    def forget(self) -> None:
        self._cached = None

    # -- proposing --------------------------------------------------------------------------------

    def check_token(self, given: str | None) -> None:
        if not self.enabled:
            raise Refused(403, "proposing rule changes is disabled here: set dashboard.rules_token to enable it")
        if not token_ok(given, self.settings.dashboard.rules_token):
            logger.warning("a rule proposal with a missing or wrong rules token refused")
            raise Refused(403, "a missing or wrong rules token: only authorised analysts propose rule changes")

    async def propose(self, data: Mapping[str, Any], token: str | None) -> Proposal:
        """Check the change, then start its backtest in the background; raises Refused or RuleError."""
        self.check_token(token)
        name = data.get("author")
        comment = data.get("comment") or ""
        if not isinstance(name, str) or not name.strip():
            raise Refused(400, "give your name: it is recorded as the change's author")
        if not isinstance(comment, str) or len(comment) > MAX_TEXT or len(name) > 100:
            raise Refused(400, f"the comment is text of at most {MAX_TEXT} characters, the name at most 100")
        hours = data.get("hours", self.settings.rules.backtest_hours)
        if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 <= hours <= 24 * 7:
            raise Refused(400, "hours must be a number from 0 to 168")
        changes = parse_changes(data.get("changes"))
        author = f"dashboard:{name.strip()}"
        # Keys, types and ranges first, against the settings' own rules: a mistake is said even without a broker.
        self.own.with_changes(changes, self.limits, author=author, comment=comment.strip())
        if self._running is not None:
            raise Refused(409, "a backtest is running already: wait for it to finish, then propose again")
        known = await self.snapshot()  # a broker just found missing is not waited for again
        if known["state"] != "ok":
            raise Refused(503, known["message"])
        try:
            history = await run_in_threadpool(self._read)  # fresh: the base of the next version
        except (UserFacingError, ImportError) as exc:
            raise Refused(503, f"the rules topic cannot be read: {exc}") from None
        base = history.latest or self.own
        candidate = base.with_changes(changes, self.limits, author=author, comment=comment.strip())
        proposal = Proposal(uuid.uuid4().hex[:12], candidate, base.version, float(hours))
        self.proposals = {proposal.id: proposal}  # the latest only: an older one is proposed again
        self._running = proposal
        task = asyncio.create_task(self._trial(proposal))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return proposal

    async def _trial(self, proposal: Proposal) -> None:
        def echo(line: str) -> None:
            with self._progress_lock:
                proposal.progress.append(str(line)[:MAX_TEXT])
                del proposal.progress[:-PROGRESS_LINES]

        def work() -> Any:
            from fraudstream.rules.trial import trial

            return trial(self.settings, proposal.candidate, proposal.hours, echo)

        try:
            proposal.result = trial_view(await run_in_threadpool(work))
            proposal.state = "done"
        except asyncio.CancelledError:
            proposal.state, proposal.error = "failed", "the dashboard stopped during the backtest"
            raise
        except UserFacingError as exc:
            proposal.state, proposal.error = "failed", str(exc)
        except Exception as exc:
            logger.warning("the backtest of a rule proposal failed", exc_info=True)
            proposal.state, proposal.error = "failed", f"the backtest failed: {type(exc).__name__}: {exc}"[:MAX_TEXT]
        finally:
            self._running = None

    async def publish(self, proposal_id: str, token: str | None) -> Proposal:
        """Publish a proposal whose backtest the analyst has seen; raises Refused."""
        self.check_token(token)
        proposal = self.proposals.get(proposal_id)
        if proposal is None:
            raise Refused(404, "no such proposal (the dashboard keeps only the latest ones): propose it again")
        if proposal.state != "done":
            raise Refused(409, f"the proposal is {proposal.state}: only a finished backtest can be published")

        def work() -> None:
            from fraudstream.rules import topic

            topic.publish(self.settings, proposal.candidate)

        try:
            await run_in_threadpool(work)
        except UserFacingError as exc:  # someone published meanwhile, or the broker is gone
            raise Refused(409, str(exc)) from None
        proposal.state = "published"
        logger.info(
            "rules version %d published from the dashboard by %s", proposal.candidate.version, proposal.candidate.author
        )
        self.forget()
        return proposal

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
