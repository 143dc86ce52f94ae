"""The PostgreSQL pool pings no connection on check-out, so dropped ones heal on use."""

from __future__ import annotations

import psycopg2
import pytest

from repo.config import Settings
from repo.conversations import find_admin_conversation, get_or_create_admin_conversation
from repo.db import pool_connections_idle
from repo.errors import DatabaseUnavailable
from tests.factories import make_admin, make_user


def test_connections_the_server_dropped_fail_once_each_then_the_pool_heals(db: Settings) -> None:
    if db.is_sqlite:
        pytest.skip("no server to drop connections")
    make_admin()
    customer = make_user()
    get_or_create_admin_conversation(customer)
    pooled = pool_connections_idle()
    assert pooled >= 1
    with psycopg2.connect(db.database_url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'helpline' AND datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] >= pooled

    failures = 0
    for _ in range(pooled + 1):
        try:
            found = find_admin_conversation(customer)
        except DatabaseUnavailable:
            failures += 1
            continue
        assert found is not None
        break
    else:
        pytest.fail("the pool did not heal")
    assert 1 <= failures <= pooled  # one failure per dead connection at most, then it works
