"""Database setup: one peewee proxy, bound at start-up to a pooled SQLite or PostgreSQL database.

With ``REPLICA_DATABASE_URL`` a second pool reads from a replica, but only inside units of work
marked ``replica_unit_of_work`` (the integrity reads); everything else uses the primary.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import random
import select
import sqlite3
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee
import psycopg2
import psycopg2.extensions
from playhouse.pool import MaxConnectionsExceeded, PooledPostgresqlDatabase, PooledSqliteDatabase

from repo.config import ConfigError, Settings
from repo.errors import DatabaseUnavailable, IntegrityViolation

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# Set only while a replica unit of work runs; a context variable, so per thread and per task.
_replica_in_use: ContextVar[peewee.Database | None] = ContextVar("replica_in_use", default=None)


class _RoutingProxy(peewee.DatabaseProxy):
    """The proxy the models are bound to: the primary, or the replica in a replica unit of work."""

    def __getattr__(self, attr: str) -> Any:
        target = _replica_in_use.get() or self.obj
        if target is None:
            raise AttributeError("the database is not open (call open_database)")
        return getattr(target, attr)


database = _RoutingProxy()


class _Bound:
    settings: Settings = Settings()
    replica: PooledPostgresqlDatabase | None = None


def open_database(settings: Settings) -> peewee.Database:
    """Bind the proxy to a pool for ``settings.database_url``; connections open lazily."""
    close_database()
    if settings.is_sqlite:
        db: peewee.Database = PooledSqliteDatabase(
            sqlite_path(settings.database_url),
            max_connections=settings.db_pool_size,
            timeout=settings.db_pool_timeout,
            check_same_thread=False,
            pragmas={
                "journal_mode": "wal",
                "synchronous": "normal",
                "foreign_keys": 1,
                "busy_timeout": settings.sqlite_busy_timeout_ms,
            },
        )
    else:
        db = _postgres_pool(settings, settings.database_url)
    database.initialize(db)
    _Bound.replica = (
        None
        if settings.replica_database_url is None
        else _postgres_pool(settings, settings.replica_database_url)
    )
    _Bound.settings = settings
    return db


class _PostgresPool(PooledPostgresqlDatabase):  # type: ignore[misc]  # playhouse is untyped
    """Peewee's pool, without a server round trip on every check-out.

    Peewee pings each connection it hands out (``SELECT 1``) while holding the pool's lock,
    so every unit of work paid an extra round trip and threads queued behind each other's
    pings.
    A connection the server closed while it sat idle is seen by a zero-timeout poll of its
    socket (readable means closed) and discarded. One that breaks in use fails its query:
    psycopg2 marks it closed, the unit of work reports DATABASE_UNAVAILABLE, and the pool
    discards it on check-in (``_can_reuse``).
    """

    def _is_closed(self, conn: Any) -> bool:
        if conn.closed or (
            conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_UNKNOWN
        ):
            return True
        # An idle connection has nothing to read unless the server closed it (or said why
        # it is about to): a zero-timeout poll of its socket, no round trip. poll, not
        # select: a busy process has descriptors above select's limit of 1023.
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        return bool(poller.poll(0))


def _postgres_pool(settings: Settings, url: str) -> PooledPostgresqlDatabase:
    return _PostgresPool(
        max_connections=settings.db_pool_size,
        timeout=settings.db_pool_timeout,
        connection_factory=_timed_connection(settings),
        **postgres_connect_kwargs(url, connect_timeout_s=settings.db_connect_timeout_s),
    )


def _timed_connection(settings: Settings) -> type[psycopg2.extensions.connection]:
    """A connection class that sets the session's timeouts as it connects (one round trip).

    Session settings, not a startup ``options`` parameter (PgBouncer refuses that). Behind a
    transaction pooler a session setting stays on whichever server connection ran it, so set
    the same values on the database role there (README, "Scaling").
    """
    timeouts = (
        f"SET statement_timeout = {int(settings.db_statement_timeout_ms)}; "
        f"SET lock_timeout = {int(settings.db_lock_timeout_ms)}; "
        "SET idle_in_transaction_session_timeout = "
        f"{int(settings.db_idle_in_transaction_timeout_ms)}"
    )

    class TimedConnection(psycopg2.extensions.connection):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.autocommit = True  # as peewee uses it; the SETs need no transaction
            with self.cursor() as cursor:
                cursor.execute(timeouts)

    return TimedConnection


def claim_sqlite_server(settings: Settings) -> Callable[[], None]:
    """Take a lock no second process serving the same SQLite file can take; returns release.

    Live messages on SQLite are fanned out inside one process, so a second worker (say,
    plain ``uvicorn --workers 2``) would never hear the first one's messages. The lock is a
    flock on a file next to the database, independent of SQLite's own (fcntl) locks. The
    kernel drops it when the process dies, so a crash leaves nothing to clean up.
    """
    path = sqlite_path(settings.database_url)
    if not settings.is_sqlite or path == ":memory:":
        return lambda: None
    real = os.path.realpath(path)  # a symlink to the same file takes the same lock
    fd = os.open(f"{real}-serving.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(
            f"WEB_CONCURRENCY: another process already serves {settings.database_url}; "
            "SQLite serves one process (use PostgreSQL for more workers)"
        ) from None
    return functools.partial(os.close, fd)  # closing the file releases the lock


def close_database(*, idle_only: bool = False) -> None:
    """Close every pooled connection of the bound database and replica, if any.

    ``idle_only``: leave the connections threads still use (closing one blocks until its
    query returns, which a silent database may never do); the process exit ends them.
    """
    for pool in (database.obj, _Bound.replica):
        if pool is None:
            continue
        if idle_only:
            pool.close_idle()
        else:
            pool.close_all()


def settings() -> Settings:
    """The settings the database was opened with."""
    return _Bound.settings


def is_sqlite() -> bool:
    return isinstance(database.obj, peewee.SqliteDatabase)


def sqlite_path(url: str) -> str:
    return unquote(url.removeprefix("sqlite:///")) or ":memory:"


def postgres_connect_kwargs(url: str, *, connect_timeout_s: int = 5) -> dict[str, Any]:
    """Turn a postgresql:// URL into psycopg2 keyword arguments.

    No ``options`` startup parameter (PgBouncer refuses it) and no session time zone (a
    transaction pooler would not keep it): every timestamp is a timestamptz that Python turns
    into UTC (``repo.models.UTCDateTimeField``), whatever the session's TimeZone.
    """
    parts = urlsplit(url)
    kwargs: dict[str, Any] = dict(parse_qsl(parts.query))
    kwargs["database"] = unquote(parts.path.lstrip("/")) or "postgres"
    if parts.username:
        kwargs["user"] = unquote(parts.username)
    if parts.password:
        kwargs["password"] = unquote(parts.password)
    if parts.hostname:
        kwargs["host"] = parts.hostname
    if parts.port:
        kwargs["port"] = parts.port
    kwargs.setdefault("application_name", "helpline")
    kwargs.setdefault("connect_timeout", str(connect_timeout_s))
    # A peer that vanishes without closing (a cut network) is noticed within about a minute.
    kwargs.setdefault("keepalives", "1")
    kwargs.setdefault("keepalives_idle", "30")
    kwargs.setdefault("keepalives_interval", "10")
    kwargs.setdefault("keepalives_count", "3")
    return kwargs


def write_transaction() -> Any:
    """An atomic block that takes the write lock up front on SQLite (BEGIN IMMEDIATE)."""
    if is_sqlite():
        return database.atomic(lock_type="IMMEDIATE")
    return database.atomic()


def unit_of_work(fn: Callable[P, T]) -> Callable[P, T]:
    """Run ``fn`` on a pooled connection; map failures to the repository's errors.

    Constraint failures become IntegrityViolation; connection loss, timeouts, lock waits and
    an exhausted pool become DatabaseUnavailable (retryable by the client). A serialization
    failure or a deadlock (40001, 40P01) rolled the whole transaction back, so the unit runs
    again, up to DB_RETRY_ATTEMPTS times in all, after a short jittered pause; nothing else
    is retried. A unit called inside another one leaves retrying to the outer one.
    """
    return _unit_of_work(fn, retry=True)


def unit_of_work_once(fn: Callable[P, T]) -> Callable[P, T]:
    """A unit of work that is never run again: for one that commits as it goes (a batched
    repair), where running it again would report only its last run."""
    return _unit_of_work(fn, retry=False)


def _unit_of_work(fn: Callable[P, T], *, retry: bool) -> Callable[P, T]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        outermost = database.is_closed()
        attempts = _Bound.settings.db_retry_attempts if outermost and retry else 1
        attempt = 1
        while True:
            try:
                with database.connection_context():
                    return fn(*args, **kwargs)
            except peewee.IntegrityError as exc:
                violation = _integrity_violation(exc)
                log.error(
                    "integrity violation in %s: constraint=%s sqlstate=%s",
                    fn.__qualname__,
                    violation.constraint,
                    violation.sqlstate,
                )
                raise violation from exc
            except (
                peewee.OperationalError,
                peewee.InterfaceError,
                peewee.InternalError,
                MaxConnectionsExceeded,
            ) as exc:
                sqlstate = _sqlstate(exc)
                if sqlstate in RETRIED_SQLSTATES and not outermost:
                    raise  # the outer unit's transaction was rolled back: it runs again
                if sqlstate in RETRIED_SQLSTATES and attempt < attempts:
                    log.warning(
                        "%s in %s (attempt %d of %d): retrying",
                        RETRIED_SQLSTATES[sqlstate],
                        fn.__qualname__,
                        attempt,
                        attempts,
                    )
                    time.sleep(_backoff_s(attempt))
                    attempt += 1
                    continue
                if not _is_unavailable(exc):
                    raise
                log.warning(
                    "database unavailable in %s: %s%s",
                    fn.__qualname__,
                    type(exc.__cause__ or exc).__name__,
                    f" (sqlstate {sqlstate})" if sqlstate else "",  # none when a connection broke
                )
                raise DatabaseUnavailable("the database is unavailable; retry shortly") from exc

    return wrapper


RETRIED_SQLSTATES = {"40001": "serialization failure", "40P01": "deadlock"}
_BACKOFF_BASE_S = 0.02
_BACKOFF_CAP_S = 0.5


def _backoff_s(attempt: int) -> float:
    """Full jitter: racing transactions that failed together do not retry together."""
    return random.uniform(0, min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2**attempt))


def _sqlstate(exc: Exception) -> str | None:
    cause = exc.__cause__ or exc.__context__
    return getattr(cause, "pgcode", None)


def replica_unit_of_work(fn: Callable[P, T]) -> Callable[P, T]:
    """A unit of work that only reads, run on the read replica when one is configured.

    For reads that may lag the primary by the replica's delay (the integrity counts). Never
    write inside one: a replica refuses writes.
    """
    work = unit_of_work(fn)

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        token = _replica_in_use.set(_Bound.replica)
        try:
            return work(*args, **kwargs)
        finally:
            _replica_in_use.reset(token)

    return wrapper


_SQLITE_BUSY = ("database is locked", "database is busy")


def _is_unavailable(exc: Exception) -> bool:
    """Connection loss, timeouts, lock waits, busy SQLite, an exhausted pool: worth a retry."""
    if isinstance(exc, MaxConnectionsExceeded | peewee.InterfaceError):
        return True
    if _sqlstate(exc) == "25P03":  # the server ended a session idle in its transaction
        return True
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, sqlite3.Error):
        return str(cause).lower().startswith(_SQLITE_BUSY)
    return isinstance(cause, psycopg2.OperationalError)


def _integrity_violation(exc: peewee.IntegrityError) -> IntegrityViolation:
    # peewee re-raises the driver's exception as its own while handling it.
    cause = exc.__cause__ or exc.__context__ or exc
    diag = getattr(cause, "diag", None)
    constraint = getattr(diag, "constraint_name", None)
    sqlstate = getattr(cause, "pgcode", None)
    if sqlstate is None:
        sqlstate = getattr(cause, "sqlite_errorname", None)
    return IntegrityViolation(constraint, sqlstate)


def check_database() -> None:
    """One round trip on a pooled connection; raises when the database is unreachable."""
    with database.connection_context():
        database.execute_sql("SELECT 1").fetchone()


def pool_connections_in_use() -> int:
    """Connections of the bound pool now checked out (0 when nothing is bound)."""
    return len(getattr(database.obj, "_in_use", ()) or ())


def pool_connections_idle() -> int:
    """Connections of the bound pool open and waiting to be checked out."""
    return len(getattr(database.obj, "_connections", ()) or ())
