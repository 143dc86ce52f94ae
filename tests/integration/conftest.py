"""Fixtures of the integration tests that more than one module uses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from tests.conftest import new_postgres_database

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture
def seed_shaped_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A PostgreSQL database in the post-mortem's old shape: no foreign key, orphans possible."""
    with new_postgres_database("helpline_adopt") as url:
        with psycopg2.connect(url) as conn, conn.cursor() as cursor:
            cursor.execute((FIXTURES / "seed_original_schema.sql").read_text())
        conn.close()
        monkeypatch.setenv("DATABASE_URL", url)
        yield url
