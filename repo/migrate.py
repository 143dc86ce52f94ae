"""Apply the SQL migrations in schema/migrations/<backend> with yoyo (idempotent, locked)."""

from __future__ import annotations

import logging
from pathlib import Path

from yoyo import get_backend, read_migrations

from repo.config import Settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "schema" / "migrations"


def migrations_path(settings: Settings) -> Path:
    return MIGRATIONS_DIR / ("sqlite" if settings.is_sqlite else "postgresql")


def migrate(settings: Settings) -> list[str]:
    """Apply every pending migration; return the ids applied (empty when up to date)."""
    backend = get_backend(yoyo_url(settings.database_url))
    migrations = read_migrations(str(migrations_path(settings)))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    applied = [migration.id for migration in pending]
    for migration_id in applied:
        log.info("applied migration %s", migration_id)
    return applied


def yoyo_url(url: str) -> str:
    if url.startswith("postgres://"):
        return "postgresql://" + url.removeprefix("postgres://")
    return url
