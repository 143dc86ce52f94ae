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

What remains written per backend elsewhere is where the statements themselves differ in shape,
or the wiring does: the message store (one statement on PostgreSQL, three on SQLite:
repo/messages.py), the first contact's choice in one round trip (repo/conversations.py), the
notifications (NOTIFY or the after-commit hand-off: repo/events.py), constraint introspection
(repo/checks.py), how a transaction begins (repo/units.py), how time columns convert
(repo/models.py), statements rendered once per backend (repo/prepared.py), and the binding
itself (repo/database.py).
"""

from __future__ import annotations

from typing import Any, TypeVar

from peewee import SQL, fn

from repo.database import database, is_sqlite

Q = TypeVar("Q")
T = TypeVar("T")

__all__ = [
    "advisory_xact_lock",
    "ago",
    "for_update",
    "is_sqlite",
    "lock_table",
    "no_jit",
    "now",
    "pick",
    "placeholders",
]


def for_update(query: Q, *, keys_too: bool = True) -> Q:
    """``query`` locking the rows it reads until the transaction ends (PostgreSQL).

    ``keys_too=False``: FOR NO KEY UPDATE, for a row locked to serialize work on it, not to
    change its key: it does not block the foreign-key checks of rows that reference it."""
    if is_sqlite():
        return query
    return query.for_update(  # type: ignore[attr-defined,no-any-return]
        "FOR UPDATE" if keys_too else "FOR NO KEY UPDATE"
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
