"""The repository through PgBouncer in transaction mode, as Helpline runs when scaled out."""

from __future__ import annotations

import select
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest

from gql.http.settings import Settings
from repo.conversations import find_conversation
from repo.database import database, open_database
from repo.messages import decode_cursor, list_messages, send_message
from tests.factories import count_rows, first_contact, make_admin, make_legacy_user, make_user
from tests.pgbouncer import SESSION_TIME_ZONE, PgBouncer
from tests.racing import run_at_once

on_postgres = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def bounced(db: Settings, pgbouncer: PgBouncer) -> Iterator[Settings]:
    """The repository on the test database through PgBouncer (``db`` empties it afterwards)."""
    settings = db.replaced(database_url=pgbouncer.url(db.database.database_url))
    open_database(settings.database)
    yield settings


@on_postgres
@pytest.mark.usefixtures("bounced")
def test_get_or_create_through_pgbouncer_creates_once_then_finds() -> None:
    make_admin()
    customer = make_legacy_user()

    first = first_contact(customer)
    again = first_contact(customer)

    assert (first.created, first.profile_created) == (True, True)
    assert (again.created, again.conversation.id) == (False, first.conversation.id)


@on_postgres
@pytest.mark.usefixtures("bounced")
def test_concurrent_first_calls_through_pgbouncer_create_one_conversation() -> None:
    make_admin()
    customer = make_legacy_user()

    # 16 callers share PgBouncer's 4 server connections, one transaction at a time each.
    results = run_at_once([lambda: first_contact(customer)] * 16)

    assert len({r.conversation.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert sum(r.profile_created for r in results) == 1
    assert (count_rows("conversations"), count_rows("messages")) == (1, 1)


@on_postgres
@pytest.mark.usefixtures("bounced")
def test_timestamps_are_utc_whatever_the_session_time_zone() -> None:
    with database.connection_context():
        (session_zone,) = database.execute_sql("SHOW timezone").fetchone()
    assert session_zone == SESSION_TIME_ZONE  # +05:45: what a pooled session may well be in
    make_admin()
    conversation_id = first_contact(make_user()).conversation.id

    sent = send_message(conversation_id, "What time is it?", sender_id=None)
    (listed, _welcome) = list_messages(conversation_id).messages
    conversation = find_conversation(conversation_id)

    assert conversation is not None
    stamps = [sent.created_at, listed.created_at, conversation.last_message_at]
    assert all(stamp is not None and stamp.utcoffset() == timedelta(0) for stamp in stamps)
    assert sent.created_at == listed.created_at == conversation.last_message_at
    assert abs(datetime.now(UTC) - sent.created_at) < timedelta(seconds=30)
    assert decode_cursor(listed.cursor)[0] == sent.created_at
    assert sent.cursor == listed.cursor


def test_listen_through_transaction_pooling_hears_nothing(pgbouncer: PgBouncer) -> None:
    """Why the listener bypasses PgBouncer (LISTEN_DATABASE_URL).

    LISTEN registers on the server connection the pooler lent for that one statement; the
    connection then serves other clients' transactions, and a notification goes to whichever
    client holds it when it arrives. With a pool of one server connection that is, every
    time, the client that sent it.
    """
    url = pgbouncer.one_connection_url
    listener = psycopg2.connect(url)
    sender = psycopg2.connect(url)
    try:
        listener.autocommit = True
        with listener.cursor() as cursor:
            cursor.execute("LISTEN helpline_pgbouncer_demo")
        with sender, sender.cursor() as cursor:
            cursor.execute("SELECT pg_notify('helpline_pgbouncer_demo', 'hello')")

        readable, _, _ = select.select([listener], [], [], 0.5)
        if readable:
            listener.poll()

        assert [n.payload for n in sender.notifies] == ["hello"]
        assert listener.notifies == []
    finally:
        listener.close()
        sender.close()
