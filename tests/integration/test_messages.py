"""Sending and paging messages on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from uuid import uuid4

import pytest

from repo.conversations import find_conversation, get_or_create_admin_conversation
from repo.errors import ConversationNotFound, IntegrityViolation, InvalidInput
from repo.ids import ConversationId, ProfileId
from repo.messages import MAX_MESSAGE_LENGTH, encode_cursor, list_messages, send_message
from repo.views import ConversationView
from tests.factories import count_rows, make_admin, make_user

pytestmark = pytest.mark.usefixtures("db")


@pytest.fixture
def conversation() -> ConversationView:
    make_admin()
    return get_or_create_admin_conversation(make_user()).conversation


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
