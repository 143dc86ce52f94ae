"""The database the models are bound to: one peewee proxy, bound at start-up to a pool.

With ``REPLICA_DATABASE_URL`` a second pool reads from a replica, but only inside units of work
marked ``replica_unit_of_work`` (repo/units.py); everything else uses the primary.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any
from urllib.parse import unquote

import peewee

from repo.config import DatabaseSettings
from repo.pool import postgres_pool, sqlite_pool

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
    """What open_database bound besides the proxy: the replica's pool, the retry budget, and
    the settings it was given (for diagnostics and tests; the repository reads none of them)."""

    replica: Any = None  # a pool (playhouse is untyped)
    retry_attempts: int = 1
    settings: DatabaseSettings | None = None
    on_replica_fallback: Callable[[], None] | None = None


def on_replica_fallback(hook: Callable[[], None] | None) -> None:
    """Call ``hook`` each time a replica read falls back to the primary (e.g. a metric)."""
    _Bound.on_replica_fallback = hook


def open_database(settings: DatabaseSettings) -> peewee.Database:
    """Bind the proxy to a pool for ``settings.database_url``; connections open lazily."""
    close_database()
    db = (
        sqlite_pool(settings, sqlite_path(settings.database_url))
        if settings.is_sqlite
        else postgres_pool(settings, settings.database_url)
    )
    database.initialize(db)
    _Bound.replica = (
        None
        if settings.replica_database_url is None
        else postgres_pool(settings, settings.replica_database_url)
    )
    _Bound.retry_attempts = settings.db_retry_attempts
    _Bound.settings = settings
    return db


def bound_settings() -> DatabaseSettings:
    """The settings the database was last opened with."""
    if _Bound.settings is None:
        raise RuntimeError("the database is not open (call open_database)")
    return _Bound.settings


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


def is_sqlite() -> bool:
    return isinstance(database.obj, peewee.SqliteDatabase)


def sqlite_path(url: str) -> str:
    return unquote(url.removeprefix("sqlite:///")) or ":memory:"


def check_database() -> None:
    """One round trip on a pooled connection; raises when the database is unreachable, or
    (PostgreSQL) is a standby: ``SELECT 1`` succeeds there too, but no write would."""
    with database.connection_context():
        if is_sqlite():
            database.execute_sql("SELECT 1").fetchone()
            return
        (in_recovery,) = database.execute_sql("SELECT pg_is_in_recovery()").fetchone()
        if in_recovery:
            raise NotPrimary("the database is a standby (in recovery): no primary to write to")


class NotPrimary(Exception):
    """The server answered, but as a standby."""


def pool_connections_in_use() -> int:
    """Connections of the bound pool now checked out (0 when nothing is bound)."""
    return len(getattr(database.obj, "_in_use", ()) or ())


def pool_connections_idle() -> int:
    """Connections of the bound pool open and waiting to be checked out."""
    return len(getattr(database.obj, "_connections", ()) or ())
