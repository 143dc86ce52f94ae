"""The admins' inbox: conversations by latest activity, with their last message and unread count."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from peewee import JOIN, Tuple, fn

from repo.backend import write_transaction
from repo.conversations import conversation_from, conversation_query
from repo.database import database
from repo.errors import ConversationNotFound, InvalidInput
from repo.ids import ConversationId, ProfileId
from repo.messages import MAX_PAGE_SIZE, decode_cursor, encode_cursor, message_from, message_query
from repo.models import Conversation, ConversationRead, Message, Profile
from repo.units import unit_of_work
from repo.views import ConversationView, MessageView


class Order(StrEnum):
    LATEST_ACTIVITY = "LATEST_ACTIVITY"
    WAITING_LONGEST = "WAITING_LONGEST"


LATEST_ACTIVITY, WAITING_LONGEST = Order.LATEST_ACTIVITY, Order.WAITING_LONGEST
ORDERS = tuple(Order)
# A WAITING_LONGEST cursor is marked (base64url never holds a '.'), so a cursor of one order
# used with the other is refused, not misread.
_WAITING_MARK = "w."
# Where conversations nobody waits in sort in the waiting order: after every waiting one.
NOBODY_WAITS = datetime(9999, 12, 31, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class InboxItem:
    conversation: ConversationView
    last_message: MessageView | None
    unread_count: int
    order: str = LATEST_ACTIVITY  # the order of the page it is on: its cursor's

    @property
    def cursor(self) -> str:
        conversation = self.conversation
        if self.order == WAITING_LONGEST:
            waited = conversation.waiting_since or NOBODY_WAITS
            return _WAITING_MARK + encode_cursor(waited, conversation.id)
        return encode_cursor(activity_of(conversation), conversation.id)


@dataclass(frozen=True, slots=True)
class InboxPage:
    items: list[InboxItem]
    has_next_page: bool
    has_previous_page: bool


def activity_of(conversation: ConversationView) -> datetime:
    return conversation.last_message_at or conversation.created_at


def _activity() -> Any:
    return fn.COALESCE(Conversation.last_message_at, Conversation.created_at)


def _waited() -> Any:
    return fn.COALESCE(
        Conversation.waiting_since, Conversation.waiting_since.db_value(NOBODY_WAITS)
    )


def _after(cursor: str, order: str) -> Any:
    """The keyset condition of the page after ``cursor`` in ``order`` (InvalidInput for a
    cursor of the other order, or none at all)."""
    waiting = cursor.startswith(_WAITING_MARK)
    if waiting != (order == WAITING_LONGEST):
        raise InvalidInput(f"the cursor {cursor[:64]!r} is from an inbox in another order")
    at, conversation_id = decode_cursor(cursor.removeprefix(_WAITING_MARK))
    key = (
        Conversation.created_at.db_value(at),
        Conversation.id.db_value(conversation_id),
    )
    if waiting:
        return Tuple(_waited(), Conversation.id) > Tuple(*key)
    return Tuple(_activity(), Conversation.id) < Tuple(*key)


@unit_of_work
def inbox_page(
    reader_id: ProfileId | None,
    *,
    first: int = 20,
    after: str | None = None,
    assigned_to: ProfileId | None = None,
    statuses: Collection[str] | None = None,
    order: str = LATEST_ACTIVITY,
) -> InboxPage:
    """Conversations newest activity first, or (WAITING_LONGEST) the longest-waiting
    customer first and those nobody waits in after them; unread counts are for ``reader_id``.

    ``reader_id`` None (a service caller) counts for each conversation's assigned admin;
    ``assigned_to``: only the conversations that admin holds; ``statuses``: only those in
    these statuses (None: every status).
    """
    if not 1 <= first <= MAX_PAGE_SIZE:
        raise InvalidInput(f"first must be between 1 and {MAX_PAGE_SIZE}, got {first}")
    if order not in ORDERS:
        raise InvalidInput(f"orderBy must be one of {', '.join(ORDERS)}, got {order!r}")
    query = conversation_query()
    if assigned_to is not None:
        query = query.where(Conversation.admin == assigned_to)
    if statuses is not None:
        query = query.where(Conversation.status.in_(sorted(set(statuses))))
    if after is not None:
        query = query.where(_after(after, order))
    ordering = (
        (_waited().asc(), Conversation.id.asc())
        if order == WAITING_LONGEST
        else (_activity().desc(), Conversation.id.desc())
    )
    rows = list(query.order_by(*ordering).limit(first + 1).tuples())
    conversations = [conversation_from(row) for row in rows[:first]]
    return InboxPage(
        _items(conversations, reader_id, order=order),
        has_next_page=len(rows) > first,
        has_previous_page=after is not None,
    )


@unit_of_work
def inbox_item(conversation_id: ConversationId, reader_id: ProfileId | None) -> InboxItem | None:
    """One conversation as the inbox shows it to ``reader_id``, or None."""
    row = conversation_query().where(Conversation.id == conversation_id).tuples().first()
    return None if row is None else _items([conversation_from(row)], reader_id)[0]


@dataclass(frozen=True, slots=True)
class InboxChanges:
    """Conversations as the inbox shows them, with the unread counts of several readers."""

    conversations: list[ConversationView]
    last_messages: dict[ConversationId, MessageView]
    unread: dict[tuple[ConversationId, ProfileId], int]

    def item(self, conversation: ConversationView, reader_id: ProfileId | None) -> InboxItem:
        """The conversation as ``reader_id`` sees it (None: its assigned admin)."""
        reader = conversation.admin.id if reader_id is None else reader_id
        return InboxItem(
            conversation,
            self.last_messages.get(conversation.id),
            self.unread.get((conversation.id, reader), 0),
        )


@unit_of_work
def inbox_changes(
    conversation_ids: Collection[ConversationId], reader_ids: Collection[ProfileId]
) -> InboxChanges:
    """The conversations, their last messages, and unread counts for every reader and for each
    conversation's admin: three queries, however many conversations and readers."""
    conversations = [
        conversation_from(row)
        for row in conversation_query().where(Conversation.id.in_(list(conversation_ids))).tuples()
    ]
    return _changes(conversations, set(reader_ids))


def _items(
    conversations: list[ConversationView],
    reader_id: ProfileId | None,
    *,
    order: str = LATEST_ACTIVITY,
) -> list[InboxItem]:
    """Two queries for the whole page: last messages, then unread counts."""
    changes = _changes(conversations, set() if reader_id is None else {reader_id})
    return [replace(changes.item(c, reader_id), order=order) for c in conversations]


def _changes(conversations: list[ConversationView], readers: set[ProfileId]) -> InboxChanges:
    if not conversations:
        return InboxChanges([], {}, {})
    ids = [c.id for c in conversations]
    last = {
        m.conversation_id: m
        for m in (
            message_from(row)
            for row in message_query()
            .join(Conversation, on=(Conversation.id == Message.conversation), src=Message)
            .where(
                Message.conversation.in_(ids), Message.created_at == Conversation.last_message_at
            )
            .tuples()
        )
    }
    readers = readers | {c.admin.id for c in conversations}
    return InboxChanges(conversations, last, _unread_counts(ids, readers))


def _unread_counts(
    ids: list[ConversationId], readers: set[ProfileId]
) -> dict[tuple[ConversationId, ProfileId], int]:
    """Messages each reader has not read (nor sent) in each conversation: one query, grouped
    by conversation and reader; a pair with none is missing."""
    reader = Profile.alias()
    rows: Any = (
        Message.select(Message.conversation, reader.id, fn.COUNT(Message.id))
        .join(reader, on=reader.id.in_(list(readers)))
        .join(
            ConversationRead,
            JOIN.LEFT_OUTER,
            on=(ConversationRead.conversation == Message.conversation)
            & (ConversationRead.reader == reader.id),
            src=Message,
        )
        .where(
            Message.conversation.in_(ids),
            Message.sender != reader.id,
            ConversationRead.last_read_at.is_null()
            | (Message.created_at > ConversationRead.last_read_at),
        )
        .group_by(Message.conversation, reader.id)
    )
    # the driver's rows as they come (a row per conversation and reader: a console's every
    # batch reads one per admin, too many to pass through Peewee's per-row conversion)
    return {
        (ConversationId(UUID(str(cid))), ProfileId(UUID(str(rid)))): int(count)
        for cid, rid, count in database.execute(rows).fetchall()
    }


@unit_of_work
def mark_read(conversation_id: ConversationId, reader_id: ProfileId) -> InboxItem:
    """Everything in the conversation up to now is read by ``reader_id``."""
    with write_transaction():
        last_message_at = (
            Conversation.select(_activity()).where(Conversation.id == conversation_id).scalar()
        )
        if last_message_at is None:
            raise ConversationNotFound(f"conversation {conversation_id} not found")
        read_at = Conversation.last_message_at.python_value(last_message_at)
        (
            ConversationRead.insert(
                conversation=conversation_id, reader=reader_id, last_read_at=read_at
            )
            .on_conflict(
                conflict_target=[ConversationRead.conversation, ConversationRead.reader],
                update={ConversationRead.last_read_at: read_at},
            )
            .execute()
        )
    item = inbox_item(conversation_id, reader_id)
    assert item is not None
    return item
