"""The connection pools: peewee's, made to fit Helpline (PostgreSQL and SQLite)."""

from __future__ import annotations

import select
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee
import psycopg2
import psycopg2.extensions
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

from repo.config import DatabaseSettings
from repo.urls import check_postgres_url, hosts_in_query


def sqlite_pool(settings: DatabaseSettings, path: str) -> peewee.Database:
    """SQLite in WAL mode with foreign keys on, writers waiting SQLITE_BUSY_TIMEOUT_MS."""
    pool: peewee.Database = PooledSqliteDatabase(
        path,
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
    return pool


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


def postgres_pool(settings: DatabaseSettings, url: str) -> PooledPostgresqlDatabase:
    return _PostgresPool(
        max_connections=settings.db_pool_size,
        timeout=settings.db_pool_timeout,
        connection_factory=_timed_connection(settings),
        **postgres_connect_kwargs(url, connect_timeout_s=settings.db_connect_timeout_s),
    )


def _timed_connection(settings: DatabaseSettings) -> type[psycopg2.extensions.connection]:
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


def postgres_connect_kwargs(url: str, *, connect_timeout_s: int = 5) -> dict[str, Any]:
    """Turn a postgresql:// URL into psycopg2 keyword arguments (several hosts in either of
    libpq's spellings, repo/urls.py; MalformedDatabaseUrl when it cannot be read).

    No ``options`` startup parameter (PgBouncer refuses it) and no session time zone (a
    transaction pooler would not keep it): every timestamp is a timestamptz that Python turns
    into UTC (``repo.models.UTCDateTimeField``), whatever the session's TimeZone.
    """
    check_postgres_url(url)
    parts = urlsplit(hosts_in_query(url))
    port = parts.port
    kwargs: dict[str, Any] = dict(parse_qsl(parts.query))
    kwargs["database"] = unquote(parts.path.lstrip("/")) or "postgres"
    if parts.username:
        kwargs["user"] = unquote(parts.username)
    if parts.password:
        kwargs["password"] = unquote(parts.password)
    if parts.hostname:
        kwargs["host"] = parts.hostname
    if port:
        kwargs["port"] = port
    kwargs.setdefault("application_name", "helpline")
    kwargs.setdefault("connect_timeout", str(connect_timeout_s))
    # A peer that vanishes without closing (a cut network) is noticed within about a minute.
    kwargs.setdefault("keepalives", "1")
    kwargs.setdefault("keepalives_idle", "30")
    kwargs.setdefault("keepalives_interval", "10")
    kwargs.setdefault("keepalives_count", "3")
    return kwargs
