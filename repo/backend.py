"""What differs between SQLite and PostgreSQL, answered here, so units of work read the same
on both backends.

- Row locks: PostgreSQL locks the rows a unit reads to change (``SELECT ... FOR UPDATE``);
  SQLite has none, and needs none: ``write_transaction`` begins with ``BEGIN IMMEDIATE``, which
  holds the database's one write lock until the end.
- Locks beyond rows (an advisory lock, a table lock): PostgreSQL's; SQLite's write lock is
  already all of them.
- Parameters: ``%s`` for psycopg2, ``?`` for sqlite3.
- The clock: the database's own, so processes on machines with skewed clocks agree.
- Settings of the session that only PostgreSQL has (JIT).
- How a writing transaction begins: SQLite takes its write lock up front (BEGIN IMMEDIATE).
- Notifications: NOTIFY inside the transaction, or (SQLite, one process) a hand-off after the
  commit.
- How a timestamp is stored: a timestamptz, or millisecond UTC text that sorts as time does.
- Error mapping: which driver errors mean "unavailable, retry" (a lost connection, a busy
  SQLite) and which constraint a violation names.

Where a statement's very shape differs (the message store: one statement on PostgreSQL, three on
SQLite; the first contact's choice; constraint introspection), the unit keeps both variants
side by side and ``pick`` chooses one, so the unit itself reads the same on both backends.
``is_sqlite()`` is asked here and in the binding (repo/database.py), nowhere else.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import psycopg2
from peewee import SQL, fn

from repo.database import database, is_sqlite

Q = TypeVar("Q")
T = TypeVar("T")

__all__ = [
    "advisory_xact_lock",
    "ago",
    "for_update",
    "integrity_details",
    "is_sqlite",
    "lock_table",
    "lost_or_busy",
    "name",
    "no_jit",
    "now",
    "pick",
    "placeholders",
    "publish",
    "stored_timestamp",
    "write_transaction",
]

# SQLite stores timestamps as millisecond text, the form its column defaults write
# (strftime('%Y-%m-%d %H:%M:%f', 'now')), so text order is time order.
SQLITE_TIMESTAMP = "%Y-%m-%d %H:%M:%S.%f"
_SQLITE_BUSY = ("database is locked", "database is busy")


def for_update(query: Q, *, keys_too: bool = True, skip_locked: bool = False) -> Q:
    """``query`` locking the rows it reads until the transaction ends (PostgreSQL).

    ``keys_too=False``: FOR NO KEY UPDATE, for a row locked to serialize work on it, not to
    change its key: it does not block the foreign-key checks of rows that reference it.
    ``skip_locked``: rows another transaction holds are left out, not waited for (work that
    any process may take, each row by one)."""
    if is_sqlite():
        return query
    lock = "FOR UPDATE" if keys_too else "FOR NO KEY UPDATE"
    return query.for_update(  # type: ignore[attr-defined,no-any-return]
        f"{lock} SKIP LOCKED" if skip_locked else lock
    )


def advisory_xact_lock(key: int) -> None:
    """Inside a transaction: hold the advisory lock ``key`` until it ends (PostgreSQL)."""
    if not is_sqlite():
        database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (key,))


def lock_table(table: str, mode: str) -> None:
    """Inside a transaction: lock ``table`` in ``mode`` until it ends (PostgreSQL)."""
    if not is_sqlite():
        database.execute_sql(f"LOCK TABLE {table} IN {mode} MODE")


def no_jit() -> None:
    """PostgreSQL: no JIT compilation for the rest of this transaction."""
    if not is_sqlite():
        database.execute_sql("SET LOCAL jit = off")


def placeholders(count: int) -> str:
    """``count`` parameter marks, comma separated, in the driver's style."""
    return ", ".join(["?" if is_sqlite() else "%s"] * count)


def pick(*, sqlite: T, postgresql: T) -> T:
    """The backend's own variant of something (a statement, a function's spelling)."""
    return sqlite if is_sqlite() else postgresql


def now() -> Any:
    """The database's clock, as its timestamp columns store it."""
    if is_sqlite():
        return fn.strftime("%Y-%m-%d %H:%M:%f", "now")
    return fn.now()


def ago(seconds: float) -> Any:
    """The database's clock ``seconds`` ago."""
    if is_sqlite():
        return fn.strftime("%Y-%m-%d %H:%M:%f", "now", f"-{seconds:.3f} seconds")
    return fn.now() - SQL("make_interval(secs => %s)", (seconds,))


def name() -> str:
    """The bound backend's name: ``sqlite`` or ``postgresql``."""
    return "sqlite" if is_sqlite() else "postgresql"


def write_transaction() -> Any:
    """An atomic block for a unit that writes: on SQLite it takes the write lock up front
    (BEGIN IMMEDIATE), so two writers never deadlock upgrading read locks."""
    if is_sqlite():
        return database.atomic(lock_type="IMMEDIATE")
    return database.atomic()


def publish(channel: str, payload: str, *, in_process: Callable[[], None]) -> None:
    """Inside a transaction: tell listeners once it commits. PostgreSQL: NOTIFY ``channel``
    with ``payload`` (every process's listener hears it); SQLite (one process): call
    ``in_process`` after the commit."""
    if is_sqlite():
        database.after_commit(in_process)
    else:
        database.execute_sql("SELECT pg_notify(%s, %s)", (channel, payload))


def stored_timestamp(value: datetime) -> Any:
    """An aware UTC ``value`` as the backend's timestamp column stores it."""
    if is_sqlite():
        return value.strftime(SQLITE_TIMESTAMP)[:-3]
    return value


def lost_or_busy(cause: BaseException | None) -> bool:
    """Whether a driver's error means the database could not do the work now (a lost or
    refused connection, a timeout, a busy SQLite file), worth a retry, as opposed to one that
    refused the work itself."""
    if isinstance(cause, sqlite3.Error):
        return str(cause).lower().startswith(_SQLITE_BUSY)
    return isinstance(cause, psycopg2.OperationalError)


def integrity_details(cause: BaseException) -> tuple[str | None, str | None]:
    """(the violated constraint's name where the driver says it, the error's code: a
    SQLSTATE on PostgreSQL, SQLite's error name)."""
    diag = getattr(cause, "diag", None)
    constraint = getattr(diag, "constraint_name", None)
    sqlstate = getattr(cause, "pgcode", None)
    if sqlstate is None:
        sqlstate = getattr(cause, "sqlite_errorname", None)
    return constraint, sqlstate
