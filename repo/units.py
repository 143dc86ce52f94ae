"""Units of work: one function, one pooled connection, its failures mapped to repo errors.

A serialization failure or a deadlock runs the unit again (with jittered backoff); connection
loss, timeouts, lock waits, an exhausted pool and a write that reached a server in recovery
(25006: during a failover; that connection leaves the pool) are DatabaseUnavailable;
constraint failures are IntegrityViolation with the constraint's name.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

import peewee
import psycopg2
import psycopg2.errors
from playhouse.pool import MaxConnectionsExceeded

from repo.backend import integrity_details, lost_or_busy
from repo.backoff import Backoff
from repo.database import _Bound, _replica_in_use, database
from repo.errors import DatabaseRefused, DatabaseUnavailable, IntegrityViolation

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


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
        attempts = _Bound.retry_attempts if outermost and retry else 1
        attempt = 1
        while True:
            try:
                with _pooled_connection(discard_read_only=outermost):
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
                    time.sleep(RETRY_BACKOFF.delay_s(attempt))
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


@contextlib.contextmanager
def _pooled_connection(*, discard_read_only: bool) -> Iterator[None]:
    """A pooled connection for the unit. One that met a server in recovery (a standby, or a
    primary demoted since) is closed, never handed out again."""
    with database.connection_context():
        try:
            yield
        except (peewee.InternalError, DatabaseUnavailable) as exc:
            if discard_read_only and _met_read_only_server(exc):
                # closed before the pool has it back: check-in finds it unusable and drops
                # it, so no other thread can be handed it in between
                database.connection().close()
            raise


def _unreachable(exc: BaseException) -> bool:
    """Whether the server could not be reached (no connection, a lost one, a full pool), as
    opposed to one that answered with an error (a timeout, a recovery conflict)."""
    return _in_chain(
        exc,
        lambda e: (
            isinstance(e, MaxConnectionsExceeded | peewee.InterfaceError)
            or (isinstance(e, psycopg2.OperationalError) and getattr(e, "pgcode", None) is None)
        ),
    )


def _met_read_only_server(exc: BaseException) -> bool:
    """Whether SQLSTATE 25006 is anywhere in the chain (a nested unit may have mapped it)."""
    return _in_chain(exc, lambda e: getattr(e, "pgcode", None) == READ_ONLY)


def _in_chain(exc: BaseException, found: Callable[[BaseException], bool]) -> bool:
    """Whether ``exc`` or what caused it (peewee wraps the driver's error, a unit wraps
    peewee's) is ``found``."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return False
        if found(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


RETRIED_SQLSTATES = {"40001": "serialization failure", "40P01": "deadlock"}
READ_ONLY = "25006"  # a write reached a server in recovery: there is no primary here (now)
# jittered: racing transactions that failed together do not retry together
RETRY_BACKOFF = Backoff(first_s=0.04, cap_s=0.5)


def _sqlstate(exc: Exception) -> str | None:
    cause = exc.__cause__ or exc.__context__
    return getattr(cause, "pgcode", None)


def replica_unit_of_work(fn: Callable[P, T]) -> Callable[P, T]:
    """A unit of work that only reads, run on the read replica when one is configured.

    For reads that may lag the primary by the replica's delay (the integrity counts). Never
    write inside one: a replica refuses writes. When the replica cannot be reached the unit
    runs on the primary (a warning line; ``on_replica_fallback`` is told).
    """
    work = unit_of_work(fn)

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        replica = _Bound.replica
        if replica is None or not database.is_closed():  # no replica, or inside a unit
            return work(*args, **kwargs)
        token = _replica_in_use.set(replica)
        try:
            return work(*args, **kwargs)
        except DatabaseUnavailable as exc:
            if not _unreachable(exc):  # a slow or cancelled read would be as slow on the primary
                raise
            # the ops reads keep working: the primary answers them, and says so
            log.warning("replica unavailable in %s (%s): reading the primary", fn.__qualname__, exc)
            if _Bound.on_replica_fallback is not None:
                _Bound.on_replica_fallback()
        finally:
            _replica_in_use.reset(token)
        return work(*args, **kwargs)

    return wrapper


def replica_lag_seconds() -> float | None:
    """How far the replica's replay trails what it received from the primary, in seconds (0
    when it has replayed all it received, so an idle primary does not look like growing lag;
    from ``pg_last_xact_replay_timestamp()``). None without a replica. Read on the replica
    itself, never on the primary instead: DatabaseUnavailable when it cannot be reached."""
    replica = _Bound.replica
    if replica is None:
        return None
    token = _replica_in_use.set(replica)
    try:
        return _replica_lag()
    finally:
        _replica_in_use.reset(token)


@unit_of_work
def _replica_lag() -> float:
    (lag,) = database.execute_sql(_REPLICA_LAG).fetchone()
    return float(lag or 0)


_REPLICA_LAG = """
    SELECT CASE
      WHEN NOT pg_is_in_recovery() THEN 0
      WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
      ELSE GREATEST(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)
    END"""


def _is_unavailable(exc: Exception) -> bool:
    """Connection loss, timeouts, lock waits, busy SQLite, an exhausted pool: worth a retry."""
    if isinstance(exc, MaxConnectionsExceeded | peewee.InterfaceError):
        return True
    if _sqlstate(exc) in ("25P03", READ_ONLY):  # ended idle in its transaction; a standby
        return True
    return lost_or_busy(exc.__cause__ or exc.__context__)


def _integrity_violation(exc: peewee.IntegrityError) -> IntegrityViolation:
    # peewee re-raises the driver's exception as its own while handling it.
    return IntegrityViolation(*integrity_details(exc.__cause__ or exc.__context__ or exc))


@contextlib.contextmanager
def command_errors() -> Iterator[None]:
    """For operations commands, which open connections of their own (migrate, adopt): the
    driver's errors as the repository's, so a command reports them without knowing drivers."""
    try:
        yield
    except psycopg2.OperationalError as exc:
        raise DatabaseUnavailable(first_line(exc)) from exc
    except psycopg2.errors.DuplicateTable as exc:
        raise DatabaseRefused(first_line(exc), foreign_schema=True) from exc
    except (peewee.DatabaseError, psycopg2.Error, sqlite3.Error) as exc:
        text = str(exc).lower()
        missing = "no such table" in text or "does not exist" in text
        raise DatabaseRefused(first_line(exc), no_schema=missing) from exc


def first_line(exc: BaseException) -> str:
    """One line of an error's text (a driver's message can run to several)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
