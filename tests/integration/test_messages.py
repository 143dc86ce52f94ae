"""Sending and paging messages on SQLite and PostgreSQL."""

from __future__ import annotations

import select
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from uuid import uuid4

import pytest

from repo import events
from repo.conversations import find_conversation
from repo.database import is_sqlite
from repo.errors import (
    ClientMessageIdReused,
    ConversationNotFound,
    IntegrityViolation,
    InvalidInput,
)
from repo.ids import ConversationId, MessageId, ProfileId
from repo.messages import MAX_MESSAGE_LENGTH, encode_cursor, list_messages, send_message
from repo.views import ConversationView
from tests.conftest import QueryLog
from tests.factories import count_rows, first_contact, make_admin, make_user, own_connection

pytestmark = pytest.mark.usefixtures("db")


@pytest.fixture
def conversation() -> ConversationView:
    make_admin()
    return first_contact(make_user()).conversation


def test_message_is_sent_by_the_customer_and_bumps_the_conversation(
    conversation: ConversationView,
) -> None:
    message = send_message(
        conversation.id, "Where is my order?", sender_id=conversation.customer.id
    )

    assert message.sender.id == conversation.customer.id
    assert message.content == "Where is my order?"
    after = find_conversation(conversation.id)
    assert after is not None
    assert after.last_message_at == message.created_at
    assert after.updated_at == message.created_at
    assert message.created_at > conversation.created_at


def test_without_a_sender_the_conversations_admin_sends(conversation: ConversationView) -> None:
    assert send_message(conversation.id, "On it!", sender_id=None).sender == conversation.admin


def test_messages_sent_back_to_back_keep_their_order(conversation: ConversationView) -> None:
    sent = [send_message(conversation.id, f"message {i}", sender_id=None).id for i in range(30)]

    page = list_messages(conversation.id, first=100)

    assert [m.id for m in page.messages][:30] == sent[::-1]
    times = [m.created_at for m in page.messages]
    assert times == sorted(times, reverse=True) and len(set(times)) == len(times)


def test_pages_walk_every_message_newest_first_exactly_once(
    conversation: ConversationView,
) -> None:
    sent = [send_message(conversation.id, f"m{i}", sender_id=None).id for i in range(11)]
    seen, cursor, pages = [], None, 0
    while True:
        page = list_messages(conversation.id, first=4, after=cursor)
        seen += [m.id for m in page.messages]
        pages += 1
        if not page.has_next_page:
            break
        cursor = page.end_cursor

    assert pages == 3
    assert seen[:11] == sent[::-1]
    assert len(seen) == 12  # the welcome message comes last


def test_blank_overlong_or_unstorable_content_is_refused_and_nothing_stored(
    conversation: ConversationView,
) -> None:
    for content in ["", "   \n", "x" * (MAX_MESSAGE_LENGTH + 1), "nul\x00byte", "half \ud800"]:
        with pytest.raises(InvalidInput):
            send_message(conversation.id, content, sender_id=None)
    assert count_rows("messages") == 1
    assert (
        send_message(conversation.id, "x" * MAX_MESSAGE_LENGTH, sender_id=None).content
        == "x" * 4000
    )


def test_sending_to_a_missing_conversation_is_not_found() -> None:
    with pytest.raises(ConversationNotFound):
        send_message(ConversationId(uuid4()), "hello?", sender_id=None)


@pytest.mark.parametrize("first", [0, -1, 101])
def test_page_size_outside_1_to_100_is_refused(conversation: ConversationView, first: int) -> None:
    with pytest.raises(InvalidInput):
        list_messages(conversation.id, first=first)


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "garbage",
        "bm90LWEtY3Vyc29y",
        "MjAyNnw=",
        encode_cursor(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))), uuid4()),
        encode_cursor(
            datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-1))), uuid4()
        ),
    ],
)
def test_a_malformed_cursor_is_refused(conversation: ConversationView, cursor: str) -> None:
    with pytest.raises(InvalidInput):
        list_messages(conversation.id, after=cursor)


def test_a_foreign_key_violation_surfaces_as_integrity_violation_with_its_constraint(
    conversation: ConversationView,
) -> None:
    with pytest.raises(IntegrityViolation) as raised:
        send_message(conversation.id, "from nobody", sender_id=ProfileId(uuid4()))

    assert raised.value.sqlstate in {"23503", "SQLITE_CONSTRAINT_FOREIGNKEY"}
    if raised.value.sqlstate == "23503":
        assert raised.value.constraint == "messages_sender_id_fkey"
    assert count_rows("messages") == 1


def test_a_retry_with_the_same_client_message_id_returns_the_first_message(
    conversation: ConversationView,
) -> None:
    customer = conversation.customer.id
    first = send_message(
        conversation.id, "Where is my order?", sender_id=customer, client_message_id="c-1"
    )
    bumped = find_conversation(conversation.id)

    retry = send_message(
        conversation.id, "Where is my order?", sender_id=customer, client_message_id="c-1"
    )

    assert retry == first
    assert (retry.id, retry.created_at, retry.client_message_id) == (
        first.id,
        first.created_at,
        "c-1",
    )
    assert count_rows("messages") == 2  # the welcome message and this one
    assert find_conversation(conversation.id) == bumped  # last_message_at not bumped again
    assert list_messages(conversation.id).messages[0] == first


def test_a_retry_is_not_announced_again(conversation: ConversationView) -> None:
    customer = conversation.customer.id
    with announced() as heard:
        first = send_message(conversation.id, "hello", sender_id=customer, client_message_id="a")
        send_message(conversation.id, "hello", sender_id=customer, client_message_id="a")

    assert heard == [(conversation.id, first.id)]


def test_the_same_client_message_id_with_other_content_is_refused_and_nothing_stored(
    conversation: ConversationView,
) -> None:
    customer = conversation.customer.id
    first = send_message(conversation.id, "first", sender_id=customer, client_message_id="k")
    bumped = find_conversation(conversation.id)

    with pytest.raises(ClientMessageIdReused, match="'k' was already used"):
        send_message(conversation.id, "second", sender_id=customer, client_message_id="k")

    assert count_rows("messages") == 2
    assert find_conversation(conversation.id) == bumped
    assert list_messages(conversation.id).messages[0] == first


def test_the_same_client_message_id_elsewhere_or_from_someone_else_is_another_message(
    conversation: ConversationView,
) -> None:
    other = first_contact(make_user()).conversation
    customer, admin = conversation.customer.id, conversation.admin.id

    sent = [
        send_message(conversation.id, "hi", sender_id=customer, client_message_id="same"),
        send_message(other.id, "hi", sender_id=other.customer.id, client_message_id="same"),
        send_message(conversation.id, "hi", sender_id=admin, client_message_id="same"),
    ]
    as_service = send_message(conversation.id, "hi", sender_id=None, client_message_id="same")

    assert len({m.id for m in sent}) == 3
    assert as_service == sent[2]  # a service caller sends as the admin: the admin's retry
    assert count_rows("messages") == 2 + 3


def test_without_a_client_message_id_the_same_content_is_stored_each_time(
    conversation: ConversationView,
) -> None:
    customer = conversation.customer.id
    sent = [send_message(conversation.id, "ping", sender_id=customer) for _ in range(2)]

    assert sent[0].id != sent[1].id
    assert [m.client_message_id for m in sent] == [None, None]
    assert count_rows("messages") == 3


def test_a_client_message_id_costs_no_extra_statement_and_a_retry_no_write(
    conversation: ConversationView, queries: QueryLog
) -> None:
    customer = conversation.customer.id

    def statements(content: str, client_message_id: str | None = None) -> list[str]:
        queries.statements.clear()
        send_message(
            conversation.id, content, sender_id=customer, client_message_id=client_message_id
        )
        return list(queries.statements)

    plain = statements("plain")
    keyed = statements("keyed", "k-1")
    retry = statements("keyed", "k-1")

    assert len(keyed) == len(plain)
    assert len(retry) <= len(plain) + 1  # it reads the message stored first
    assert not any(s.lstrip().upper().startswith("UPDATE") for s in retry)
    if not is_sqlite():  # one statement stores, bumps, notifies and returns it, key or not
        assert sum("INSERT INTO messages" in s for s in keyed) == 1
        assert len(plain) == 3  # the conversation locked, the sender's profile healed, stored


@pytest.mark.parametrize(
    "client_message_id",
    ["", "x" * 65, "with space", "semi;colon", "new\nline", "ünïcode", "emoji-\U0001f600", "a/b"],
)
def test_a_malformed_client_message_id_is_refused_and_nothing_stored(
    conversation: ConversationView, client_message_id: str
) -> None:
    with pytest.raises(InvalidInput, match="clientMessageId"):
        send_message(conversation.id, "hi", sender_id=None, client_message_id=client_message_id)
    assert count_rows("messages") == 1


@pytest.mark.parametrize("client_message_id", [str(uuid4()), "x" * 64, "A", "web:tab-2.msg_17"])
def test_uuids_and_other_plain_ids_up_to_64_characters_are_accepted(
    conversation: ConversationView, client_message_id: str
) -> None:
    sent = send_message(conversation.id, "hi", sender_id=None, client_message_id=client_message_id)
    assert sent.client_message_id == client_message_id


@contextmanager
def announced() -> Iterator[list[tuple[ConversationId, MessageId]]]:
    """The live events (what subscribers hear) of messages stored inside the block."""
    heard: list[tuple[ConversationId, MessageId]] = []
    if is_sqlite():  # after-commit callbacks, in this process

        def listener(event: events.Event) -> None:
            assert isinstance(event, events.MessageStored)
            heard.append((event.conversation_id, event.message_id))

        events.add_local_listener(listener)
        try:
            yield heard
        finally:
            events.remove_local_listener(listener)
        return
    conn = own_connection()
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"LISTEN {events.CHANNEL}")
        yield heard
        with conn.cursor() as cursor:  # delivered after everything committed before it
            cursor.execute("SELECT pg_notify(%s, 'end')", (events.CHANNEL,))
        while True:
            conn.poll()
            while conn.notifies:
                payload = conn.notifies.pop(0).payload
                if payload == "end":
                    return
                event = events.decode(payload)
                assert isinstance(event, events.MessageStored)
                heard.append((event.conversation_id, event.message_id))
            assert select.select([conn], [], [], 10)[0], "the end marker never arrived"
    finally:
        conn.close()
