"""Faults a test injects for real: a lock another connection holds, terminated backends."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

import psycopg2

from gql.http.settings import Settings
from repo.database import sqlite_path
from repo.pool import postgres_connect_kwargs


@contextmanager
def holding_the_profile_lock(settings: Settings, customer: UUID) -> Iterator[None]:
    """Another connection holds the lock a first call needs, until the block ends."""
    if settings.database.is_sqlite:
        holder = sqlite3.connect(sqlite_path(settings.database.database_url), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # SQLite's write lock
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    conn = psycopg2.connect(**postgres_connect_kwargs(settings.database.database_url))
    try:
        with conn.cursor() as cursor:  # psycopg2 opened a transaction: the lock stays held
            cursor.execute("SELECT 1 FROM profiles WHERE id = %s FOR UPDATE", (str(customer),))
        yield
    finally:
        conn.rollback()
        conn.close()


def terminate_helpline_backends(settings: Settings) -> int:
    """pg_terminate_backend on the app's connections to this test's database only."""
    conn = psycopg2.connect(
        **postgres_connect_kwargs(settings.database.database_url)
        | {"application_name": "fault-injector"}
    )
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'helpline' AND datname = current_database()"
            )
            (count,) = cursor.fetchone()
            return int(count)
    finally:
        conn.close()
