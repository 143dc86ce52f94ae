"""Real rows for tests, including legacy rows that break today's constraints."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID, uuid4

import psycopg2

from repo.conversations import get_or_create_admin_conversation
from repo.database import database, is_sqlite
from repo.ids import ConversationId, CustomerId, ProfileId
from repo.models import Profile, User
from repo.views import AdminConversation
from tests.conftest import TEST_WELCOME_MESSAGE


def make_user(
    *,
    email: str | None = None,
    full_name: str | None = "Test Customer",
    profile_picture_url: str | None = None,
) -> CustomerId:
    """A signed-up user; the users->profiles trigger gives it a profile."""
    user_id = uuid4()
    with database.connection_context():
        User.insert(
            id=user_id,
            email=email or f"{user_id}@example.com",
            full_name=full_name,
            profile_picture_url=profile_picture_url,
        ).execute()
    return CustomerId(user_id)


def make_admin(name: str = "Ada Admin") -> ProfileId:
    admin_id = make_user(full_name=name)
    promote(admin_id)
    return ProfileId(admin_id)


def promote(user_id: CustomerId | ProfileId) -> None:
    """Make an existing profile an admin's."""
    with database.connection_context():
        Profile.update(is_admin=True).where(Profile.id == user_id).execute()


def make_legacy_user(**kwargs: Any) -> CustomerId:
    """A user from before the trigger existed: a users row without a profile."""
    user_id = make_user(**kwargs)
    with database.connection_context():
        Profile.delete().where(Profile.id == user_id).execute()
    return user_id


def own_connection() -> Any:
    """A DB-API connection of its own to the database the repository is bound to."""
    pool = database.obj
    if is_sqlite():
        return sqlite3.connect(pool.database, isolation_level=None)
    params = {k: v for k, v in pool.connect_params.items() if not k.endswith("_factory")}
    return psycopg2.connect(dbname=pool.database, **params)


@contextmanager
def constraints_bypassed() -> Iterator[Any]:
    """A DB-API cursor on its own connection with foreign keys off, as old data was written."""
    conn = own_connection()
    if is_sqlite():
        try:
            conn.execute("PRAGMA foreign_keys = OFF")
            yield conn.cursor()
        finally:
            conn.close()
        return
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = replica")
            yield cursor
    finally:
        conn.close()


def _param(cursor: Any) -> str:
    return "?" if isinstance(cursor, sqlite3.Cursor) else "%s"


def make_orphaned_conversation(customer_id: UUID, admin_id: UUID) -> ConversationId:
    """A conversation whose customer has no profile (and maybe no users row either)."""
    conversation_id = uuid4()
    with constraints_bypassed() as cursor:
        p = _param(cursor)
        cursor.execute(f"DELETE FROM profiles WHERE id = {p}", (str(customer_id),))
        cursor.execute(
            f"INSERT INTO conversations (id, customer_id, admin_id) VALUES ({p}, {p}, {p})",
            (str(conversation_id), str(customer_id), str(admin_id)),
        )
    return ConversationId(conversation_id)


def delete_profile_unchecked(profile_id: UUID) -> None:
    """Delete a profile that rows still reference, as legacy data did."""
    with constraints_bypassed() as cursor:
        cursor.execute(f"DELETE FROM profiles WHERE id = {_param(cursor)}", (str(profile_id),))


def count_rows(table: str) -> int:
    with database.connection_context():
        return int(database.execute_sql(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def first_contact(customer_id: UUID, **kwargs: Any) -> AdminConversation:
    """``get_or_create_admin_conversation`` as the server calls it, with the tests' welcome."""
    return get_or_create_admin_conversation(
        CustomerId(customer_id), welcome_message=TEST_WELCOME_MESSAGE, **kwargs
    )


def waiting_on_a_lock() -> bool:
    """Whether a backend of the bound database waits for a lock now (PostgreSQL; SQLite
    cannot tell: its writers wait out the busy timeout)."""
    with database.connection_context():
        if is_sqlite():
            return False
        sql = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return bool(database.execute_sql(sql).fetchone()[0])
