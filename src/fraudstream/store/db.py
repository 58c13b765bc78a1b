"""One connection type over the two stores: SQLite (the embedded default, a file) and
PostgreSQL (a server a team shares, `store.url`).

Every reader and writer of the store (the writer and the copier, `query`, `evaluate`, the
dashboard, triage, notifications) talks through `Connection`, with SQLite's `?` placeholders
and SQL both databases understand (`INSERT ... ON CONFLICT DO NOTHING`, not `INSERT OR IGNORE`).
For PostgreSQL the placeholders become psycopg's `%s`; a row reads by position, by column name
and as a dict on both. The schema and its versions are `fraudstream.store.schema`'s.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from fraudstream.config import Settings, redact_url
from fraudstream.errors import UserFacingError

logger = logging.getLogger(__name__)

Dialect = Literal["sqlite", "postgresql"]

# What a failing store raises, whichever it is: for `except` clauses.
ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)
# A value the database refuses (out of range, not valid text): the same on every retry.
DATA_ERRORS: tuple[type[Exception], ...] = (sqlite3.DataError, psycopg.DataError)
# Failures worth retrying later (a lock, a server restarting, a dropped connection).
TRANSIENT: tuple[type[Exception], ...] = (sqlite3.OperationalError, psycopg.OperationalError)


def message(exc: BaseException) -> str:
    """A database error in one line: PostgreSQL's primary message (no caret line, no query),
    or the first line of the text."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    return primary or (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class StoreMissingError(Exception):
    """The database or its tables do not exist yet."""


class DatabaseMissing(StoreMissingError):
    """The PostgreSQL database of store.url does not exist (fraudstream does not create databases)."""


class StoreError(UserFacingError):
    """A database error, in one line, for the user."""


class SchemaMissing(UserFacingError):
    """store.url's search_path names a schema that does not exist (fraudstream creates tables, not schemas)."""


class StoreUnreachable(UserFacingError):
    """The PostgreSQL server of store.url cannot be reached or refused the connection."""


@dataclass(frozen=True)
class Location:
    """Which store a run uses: a SQLite file, or a PostgreSQL URL."""

    dialect: Dialect
    path: Path | None = None  # SQLite
    url: str | None = None  # PostgreSQL

    @staticmethod
    def of(settings: Settings) -> Location:
        if settings.store.url:
            return Location("postgresql", url=settings.store.url)
        return Location("sqlite", path=settings.db_path)

    def __str__(self) -> str:
        """For messages and logs: the path, or the URL with its password masked."""
        return str(self.path) if self.dialect == "sqlite" else redact_url(self.url or "")


class Row(tuple):
    """A result row: by position, by column name, and `dict(row)`, as `sqlite3.Row` is."""

    _names: tuple[str, ...] = ()

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._names.index(key))
            except ValueError:
                raise IndexError(f"no column {key}") from None
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor: Any) -> Any:
    names = tuple(d.name for d in cursor.description or ())
    cls = type("Row", (Row,), {"_names": names, "__slots__": ()})

    def make(values: Sequence[Any]) -> Row:
        return cls(values)

    return make


def to_format(sql: str) -> str:
    """SQLite's `?` placeholders as psycopg's `%s` (and a literal `%` as `%%`), outside quotes."""
    out = []
    quote: str | None = None
    for ch in sql:
        if quote is not None:
            out.append("%%" if ch == "%" else ch)
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


class Cursor:
    """The result of `Connection.execute`: fetchone, fetchall, iteration and rowcount."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def fetchone(self) -> Any:
        return self.raw.fetchone()

    def fetchall(self) -> list[Any]:
        return self.raw.fetchall()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.raw)

    @property
    def rowcount(self) -> int:
        return self.raw.rowcount

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Another statement on the same cursor (inside `Connection.transaction`)."""
        self.raw.execute(*_statement(self._dialect, sql, params))
        return self

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        if self._dialect == "sqlite":
            rows = [tuple(r) for r in rows]
            if rows:
                self.raw.executemany(sql, rows)
            return
        rows = [pg_params(r) for r in rows]
        if rows:
            self.raw.executemany(to_format(sql), rows)

    @property
    def _dialect(self) -> Dialect:
        return "sqlite" if isinstance(self.raw, sqlite3.Cursor) else "postgresql"

    def close(self) -> None:
        self.raw.close()


# PostgreSQL's TEXT cannot hold NUL (a DataError, the same on every retry: one such character
# in a record would stop the copier for good). It is stored as U+FFFD, Unicode's replacement
# character, the mark decoders already leave where a character could not be kept; not as the
# six characters "\u0000", which a raw record (a dead letter's JSON text) may really contain.
NUL_REPLACEMENT = "\ufffd"


def pg_value(value: Any) -> Any:
    """A parameter as PostgreSQL can store it: text without NUL characters."""
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", NUL_REPLACEMENT)
    return value


def pg_params(params: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(pg_value(v) for v in params)


def _statement(dialect: Dialect, sql: str, params: Sequence[Any]) -> tuple[Any, ...]:
    if dialect == "sqlite":
        return (sql, tuple(params))
    if sql.strip().upper() == "BEGIN IMMEDIATE":  # SQLite's write lock up front; PostgreSQL locks rows
        return ("BEGIN",)
    return (to_format(sql), pg_params(params)) if params else (sql,)


class Connection:
    """A connection to the store, SQLite or PostgreSQL, with one interface.

    PostgreSQL connections are in autocommit mode: a statement alone commits, and several
    commit together inside `transaction()` (or between explicit BEGIN and COMMIT statements,
    as SQLite code does). SQLite keeps its module's behaviour (`commit()` after writes)."""

    def __init__(self, raw: Any, dialect: Dialect, location: Location) -> None:
        self.raw = raw
        self.dialect = dialect
        self.location = location

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        cur = self.raw.cursor()
        cur.execute(*_statement(self.dialect, sql, params))
        return Cursor(cur)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        Cursor(self.raw.cursor()).executemany(sql, rows)

    def executescript(self, script: str) -> None:
        """Several statements without parameters (a schema, a migration)."""
        if self.dialect == "sqlite":
            self.raw.executescript(script)
        else:
            self.raw.execute(script)

    def cursor(self) -> Cursor:
        return Cursor(self.raw.cursor())

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """One write transaction: everything in it commits together or not at all. On SQLite it
        takes the write lock at its start (waiting up to the busy timeout)."""
        cur = self.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
        except BaseException:
            cur.close()
            raise
        try:
            yield cur
            cur.execute("COMMIT")
            if self.dialect == "postgresql" and cur.raw.statusmessage == "ROLLBACK":
                # PostgreSQL answers COMMIT of a transaction a failed statement aborted (an
                # error caught inside the block) with ROLLBACK, not an error: nothing was written.
                raise psycopg.errors.InFailedSqlTransaction(
                    "the transaction was rolled back, not committed: a statement in it had failed"
                )
        except BaseException:
            try:
                cur.execute("ROLLBACK")
            except ERRORS:
                logger.debug("rollback failed", exc_info=True)
            raise
        finally:
            cur.close()

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open (an explicit BEGIN, or `transaction()`)."""
        if self.dialect == "sqlite":
            return self.raw.in_transaction
        return self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    @property
    def broken(self) -> bool:
        """A PostgreSQL connection that was lost (the server restarted): open another."""
        return self.dialect == "postgresql" and (self.raw.closed or self.raw.broken)

    def commit(self) -> None:
        self.raw.commit()

    def rollback(self) -> None:
        self.raw.rollback()

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Introspection, the same question asked of either database.
    def has_table(self, name: str) -> bool:
        if self.dialect == "sqlite":
            sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        else:
            sql = "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?"
        return self.execute(sql, (name,)).fetchone() is not None

    def columns(self, table: str) -> list[str]:
        if self.dialect == "sqlite":
            return [r[1] for r in self.execute(f"PRAGMA table_info({table})")]
        sql = (
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = ? ORDER BY ordinal_position"
        )
        return [r[0] for r in self.execute(sql, (table,))]


def connect(
    location: Location | Settings,
    create: bool = False,
    read_only: bool = False,
    busy_timeout_ms: int = 30_000,
) -> Connection:
    """A connection to the store. `create`: make the SQLite file's folder (the schema itself is
    `fraudstream.store.schema.migrate`'s); `read_only`: a connection that cannot write (the
    dashboard's and the queries'), which never takes a writer's lock.

    Raises StoreMissingError for a SQLite file that does not exist (unless `create`), and
    StoreUnreachable, one line, for a PostgreSQL server that cannot be reached."""
    loc = Location.of(location) if isinstance(location, Settings) else location
    if loc.dialect == "postgresql":
        return _connect_postgresql(loc, read_only, busy_timeout_ms)
    assert loc.path is not None
    path = loc.path
    if not create and not path.exists():
        raise StoreMissingError(f"no alert database at {path}: run 'fraudstream run' first")
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    target: str | Path = f"{path.resolve().as_uri()}?mode=ro" if read_only else path
    raw = sqlite3.connect(target, uri=read_only, timeout=busy_timeout_ms / 1000, check_same_thread=False)
    raw.row_factory = sqlite3.Row
    raw.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    return Connection(raw, "sqlite", loc)


def _secrets(url: str) -> list[str]:
    """The passwords a URL holds, as written and decoded, longest first, for `scrub` (found
    without parsing it whole: a malformed URL is the one whose error text may quote them)."""
    found: list[str] = []
    authority = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)", url)
    if authority and "@" in authority.group(1):
        found.append(authority.group(1).rpartition("@")[0].partition(":")[2])
    found += re.findall(r"(?i)(?:^|[?&\s])(?:ssl)?password\s*=\s*([^&#\s]*)", url)
    found += [unquote(f) for f in found]
    return sorted({f for f in found if f}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """An error text with the URL's passwords masked: libpq quotes a malformed URL or a piece
    of it ('invalid percent-encoded token: "s3cr%zzet"')."""
    if url:
        text = text.replace(url, redact_url(url))
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return text


def _connect_postgresql(loc: Location, read_only: bool, busy_timeout_ms: int) -> Connection:
    options = [f"-c lock_timeout={int(busy_timeout_ms)}"]
    try:  # the URL's own options (`?options=-csearch_path%3Dteam_a`) are kept, ours added
        given = conninfo_to_dict(loc.url or "").get("options")
    except psycopg.Error as exc:
        raise StoreUnreachable(f"malformed store.url ({loc}): {scrub(message(exc), loc.url or '')}") from None
    if given:
        options.insert(0, str(given))
    if read_only:
        options.append("-c default_transaction_read_only=on")
    try:
        raw = psycopg.connect(
            loc.url or "",
            autocommit=True,
            connect_timeout=10,
            options=" ".join(options),
            row_factory=_row_factory,
            application_name="fraudstream",
        )
    except psycopg.Error as exc:
        first = scrub((str(exc).strip().splitlines() or [type(exc).__name__])[0], loc.url or "")
        first = first.removeprefix("connection failed: ")
        if exc.sqlstate == "3D000" or ("database" in first and "does not exist" in first):
            raise DatabaseMissing(
                f"the PostgreSQL store {loc} does not exist: create the database (createdb, or"
                " 'fraudstream store postgres start' for a local one), then 'fraudstream store migrate'"
            ) from None
        raise StoreUnreachable(f"cannot connect to the PostgreSQL store {loc}: {first}") from None
    try:
        _check_schema(raw, loc)
    except BaseException:
        raw.close()
        raise
    return Connection(raw, "postgresql", loc)


def _check_schema(raw: Any, loc: Location) -> None:
    """A search_path naming no existing schema leaves current_schema() NULL: nothing could be
    created or found (and the copier's lock key would be NULL). Say so, rather than "no tables"."""
    try:
        current, path, database = raw.execute(
            "SELECT current_schema(), current_setting('search_path'), current_database()"
        ).fetchone()
    except psycopg.Error as exc:
        raise StoreError(f"the PostgreSQL store {loc}: {message(exc)}") from None
    if current is None:
        first = (path.split(",")[0].strip() or path).strip('"')
        raise SchemaMissing(
            f"the PostgreSQL store {loc}: schema {first} does not exist in database {database}:"
            f" CREATE SCHEMA {first} first (search_path: {path})"
        )


@contextmanager
def one_line(location: Location | str) -> Iterator[None]:
    """For commands: a database error as one line, PostgreSQL's primary message (never its
    caret line or the query), naming the store."""
    try:
        yield
    except UserFacingError:
        raise
    except ERRORS as exc:
        raise StoreError(f"the store {location}: {message(exc)}") from None
