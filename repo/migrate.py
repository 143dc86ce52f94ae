"""Apply the SQL migrations in schema/migrations/<backend> with yoyo (idempotent, locked)."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path

from yoyo import get_backend, read_migrations

from repo.config import DatabaseSettings
from repo.urls import hosts_in_query

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "schema" / "migrations"


def migrations_path(settings: DatabaseSettings) -> Path:
    return MIGRATIONS_DIR / ("sqlite" if settings.is_sqlite else "postgresql")


def migrate(settings: DatabaseSettings) -> list[str]:
    """Apply every pending migration; return the ids applied (empty when up to date)."""
    backend = get_backend(yoyo_url(settings.database_url))
    migrations = read_migrations(str(migrations_path(settings)))
    with backend.lock():
        pending = backend.to_apply(migrations)
        with _quiet_yoyo():
            backend.apply_migrations(pending)
    return [migration.id for migration in pending]


@contextlib.contextmanager
def _quiet_yoyo() -> Iterator[None]:
    """yoyo logs every step at INFO and prints the rows any statement returns (SQLite checks
    an ALTER TABLE ... ADD COLUMN with a query of its own): neither is for the operator, who
    gets one line per migration applied from the command that ran it."""
    logger = logging.getLogger("yoyo")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def report_applied(applied: list[str]) -> None:
    """What a migrating command prints: a line per migration applied, or that none was due."""
    for migration_id in applied:
        print(f"applied migration {migration_id}")
    if not applied:
        print("migrations: up to date")


def yoyo_url(url: str) -> str:
    """The URL as yoyo reads it: postgresql://, several hosts as query parameters."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    return hosts_in_query(url) if url.startswith("postgresql://") else url
