"""Every pooled PostgreSQL connection carries the configured timeouts."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gql.http.settings import Settings
from repo.config import ConfigError
from repo.database import database, open_database
from repo.errors import DatabaseUnavailable
from repo.units import unit_of_work


@unit_of_work
def show(name: str) -> Any:
    return database.execute_sql(f"SHOW {name}").fetchone()[0]


def test_a_pooled_connection_has_the_configured_timeouts(postgres: Settings) -> None:
    open_database(
        postgres.replaced(
            db_statement_timeout_ms=7000,
            db_lock_timeout_ms=700,
            db_idle_in_transaction_timeout_ms=70_000,
        ).database
    )

    assert show("statement_timeout") == "7s"
    assert show("lock_timeout") == "700ms"
    assert show("idle_in_transaction_session_timeout") == "70s"


def test_a_statement_over_the_timeout_is_cancelled_as_unavailable(postgres: Settings) -> None:
    open_database(postgres.replaced(db_statement_timeout_ms=200, db_lock_timeout_ms=100).database)

    @unit_of_work
    def slow() -> None:
        database.execute_sql("SELECT pg_sleep(5)")

    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable):
        slow()
    assert time.monotonic() - started < 4  # cancelled by the server, not waited out

    assert show("statement_timeout") == "200ms"  # the connection went back to the pool usable


def test_a_lock_timeout_must_sit_below_the_statement_timeout() -> None:
    with pytest.raises(ConfigError, match="DB_LOCK_TIMEOUT_MS: must be set and below"):
        Settings.from_env({"DB_STATEMENT_TIMEOUT_MS": "1000", "DB_LOCK_TIMEOUT_MS": "1000"})
    assert Settings.from_env({"DB_STATEMENT_TIMEOUT_MS": "0", "DB_LOCK_TIMEOUT_MS": "0"})
