"""Messages: send one, list a conversation's newest first with keyset cursors."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import peewee
from peewee import Tuple

from repo import allowance, backend, events, status
from repo.allowance import Allowance, SendLimits
from repo.database import database
from repo.errors import ClientMessageIdReused, ConversationNotFound, InvalidInput, RateLimited
from repo.ids import ConversationId, CustomerId, MessageId, ProfileId
from repo.invisible import shows_nothing
from repo.models import Conversation, Message, Profile
from repo.prepared import PreparedSelect
from repo.rows import profile_columns, profile_from
from repo.units import unit_of_work
from repo.users import ensure_profile
from repo.views import MessagePage, MessageView

MAX_MESSAGE_LENGTH = 4000
MAX_PAGE_SIZE = 100

# A message is never older than the conversation's last one, even within one clock tick,
# so newest-first order is send order on both backends. On PostgreSQL one statement stores
# it, bumps the conversation, notifies listeners (delivered on commit) and returns it with its
# sender's profile, as message_query() reads it: one round trip.
_STORE_MESSAGE_POSTGRES_TEMPLATE = """
    WITH {allowance}stored AS (
        INSERT INTO messages
            (id, conversation_id, sender_id, content, created_at, client_message_id)
        SELECT %(id)s::uuid, c.id, %(sender)s::uuid, %(content)s,
               GREATEST(clock_timestamp(), c.last_message_at + interval '1 microsecond'),
               %(client_message_id)s
        FROM conversations c WHERE c.id = %(conversation)s{if_allowed}
        {on_retry}
        RETURNING id, conversation_id, sender_id, content, created_at, client_message_id
    ), bumped AS (
        UPDATE conversations
        SET last_message_at = stored.created_at, updated_at = stored.created_at,
            waiting_since = CASE WHEN stored.sender_id = conversations.customer_id
                THEN COALESCE(conversations.waiting_since, stored.created_at) END
        FROM stored WHERE conversations.id = stored.conversation_id
    )
    SELECT s.id, s.conversation_id, s.content, s.created_at, s.client_message_id,
           p.id, p.name, p.avatar_url, p.is_admin, p.is_online,
           pg_notify(%(channel)s, %(payload)s){tokens}
    FROM stored s JOIN profiles p ON p.id = s.sender_id"""
_INSERT_MESSAGE_SQLITE_TEMPLATE = """
    INSERT INTO messages (id, conversation_id, sender_id, content, created_at, client_message_id)
    SELECT ?, c.id, ?, ?,
           MAX(strftime('%Y-%m-%d %H:%M:%f', 'now'),
               COALESCE(strftime('%Y-%m-%d %H:%M:%f', c.last_message_at, '+0.001 seconds'), '')),
           ?
    FROM conversations c WHERE c.id = ?
    {on_retry}
    RETURNING created_at"""
# The conversation after a message, as the PostgreSQL statement's ``bumped`` does it: its
# times move, and the customer waits from their oldest unanswered message (staff writing ends
# the wait). Written out, not built per call: it runs with every message.
_BUMP_SQLITE = """
    UPDATE conversations
    SET last_message_at = ?, updated_at = ?,
        waiting_since = CASE WHEN customer_id = ? THEN COALESCE(waiting_since, ?) END
    WHERE id = ?"""
# With a client message id, a sender's retry stores nothing and returns no row (so nothing is
# bumped or announced). Sends without one run the plain insert, at the cost they always had.
_RETRY_STORES_NOTHING = """ON CONFLICT (conversation_id, sender_id, client_message_id)
        WHERE client_message_id IS NOT NULL DO NOTHING"""


def _store_postgres(*, keyed: bool, limited: bool) -> str:
    """The one statement that stores a message on PostgreSQL; ``limited``: it takes the
    message from the sender's allowance first and stores nothing when that is empty."""
    return _STORE_MESSAGE_POSTGRES_TEMPLATE.format(
        on_retry=_RETRY_STORES_NOTHING if keyed else "",
        allowance=f"allowance AS ({allowance.TAKE[False, keyed]}\n    ), " if limited else "",
        if_allowed=" AND EXISTS (SELECT 1 FROM allowance)" if limited else "",
        tokens=", (SELECT tokens FROM allowance)" if limited else "",
    )


# By (keyed, limited).
_STORE_POSTGRES = {
    (keyed, limited): _store_postgres(keyed=keyed, limited=limited)
    for keyed in (False, True)
    for limited in (False, True)
}
_INSERT_MESSAGE_SQLITE = _INSERT_MESSAGE_SQLITE_TEMPLATE.format(on_retry="")
_INSERT_KEYED_MESSAGE_SQLITE = _INSERT_MESSAGE_SQLITE_TEMPLATE.format(
    on_retry=_RETRY_STORES_NOTHING
)
# What a client may use as its own message id: a UUID fits, and so do most client schemes.
_CLIENT_MESSAGE_ID = re.compile(r"[A-Za-z0-9._:-]+")
MAX_CLIENT_MESSAGE_ID_LENGTH = 64


@unit_of_work
def send_message(
    conversation_id: ConversationId,
    content: str,
    *,
    sender_id: ProfileId | None = None,
    sender_for: Callable[[CustomerId | None], ProfileId | None] | None = None,
    client_message_id: str | None = None,
    limits: SendLimits | None = None,
    on_allowance: Callable[[Allowance], object] | None = None,
    on_reopen: Callable[[], object] | None = None,
    on_answered: Callable[[float], object] | None = None,
) -> MessageView:
    """Store a message and bump last_message_at; no sender means the conversation's admin.

    ``sender_for``: decides the sender from the conversation's customer (None: no such
    conversation), read under the conversation's lock, so the caller's check and the send are
    one transaction; it may raise to refuse. A sender's retry with the same
    ``client_message_id`` in the conversation stores nothing and returns the message stored
    first (ClientMessageIdReused when the content differs).

    ``limits``: the message is taken from the sender's allowance (repo/allowance.py: the
    customer's rate in their own conversation, staff's elsewhere; none for the admin's voice),
    RateLimited when it is empty; ``on_allowance`` hears what it holds, refused or not.
    ``on_reopen``: told when the customer's message opened their resolved or snoozed
    conversation again (repo/status.py); ``on_answered``: told how long the customer waited
    (seconds since their oldest unanswered message) when a staff message ends a wait; both
    once the message has committed.
    """
    if sender_for is None:
        validate_input(content, client_message_id)
    with backend.write_transaction():
        query = Conversation.select(
            Conversation.admin,
            Conversation.customer,
            Conversation.status,
            Conversation.waiting_since,
        ).where(Conversation.id == conversation_id)
        found: Any = list(backend.for_update(query).tuples())
        if sender_for is not None:  # the caller's right first, then what they sent
            sender_id = sender_for(CustomerId(found[0][1]) if found else None)
            validate_input(content, client_message_id)
        if not found:
            raise ConversationNotFound(f"conversation {conversation_id} not found")
        per_minute: int | None = None
        if sender_id is not None:
            ensure_profile(CustomerId(sender_id))  # a legacy customer writing heals themself
            if limits is not None:
                own = sender_id == found[0][1]
                per_minute = limits.customer_per_minute if own else limits.staff_per_minute
        sender = sender_id or ProfileId(found[0][0])
        message, tokens = post_message(
            conversation_id,
            sender,
            content,
            client_message_id=client_message_id,
            per_minute=per_minute,
        )
        if message is not None:
            _follow_life_cycle(message, found[0], on_reopen=on_reopen, on_answered=on_answered)
            if per_minute is not None and on_allowance is not None:
                assert tokens is not None
                on_allowance(allowance.after_taking(per_minute, tokens))
            return message
        # Nothing stored: a retry (it costs nothing), or the allowance is empty.
        first = (
            None
            if client_message_id is None
            else _first_sent(conversation_id, sender, client_message_id, content=content)
        )
        if first is not None:
            if per_minute is not None and on_allowance is not None:
                on_allowance(allowance.held(sender, per_minute))
            return first
        assert per_minute is not None  # only a limited send stores nothing without a retry
        refusal = allowance.refused(sender, per_minute)
        if on_allowance is not None:
            on_allowance(refusal)
        assert refusal.retry_after_s is not None
        raise RateLimited(limit=refusal.limit, retry_after_s=refusal.retry_after_s)


def _follow_life_cycle(
    message: MessageView,
    conversation: tuple[Any, ...],
    *,
    on_reopen: Callable[[], object] | None,
    on_answered: Callable[[float], object] | None,
) -> None:
    """Inside the send's transaction, the message stored (``conversation``: its admin,
    customer, status and waiting_since, read under its lock): the customer's message opens a
    resolved or snoozed conversation again; a staff message ends the customer's wait."""
    admin, customer, current, waited_since = conversation
    if message.sender.id == customer:
        reopened = status.reopen_for_customer(message.conversation_id, admin, current)
        if reopened and on_reopen is not None:
            database.after_commit(on_reopen)
    elif waited_since is not None and on_answered is not None:
        waited = max((message.created_at - waited_since).total_seconds(), 0.0)
        database.after_commit(lambda: on_answered(waited))


def post_message(
    conversation_id: ConversationId,
    sender_id: ProfileId,
    content: str,
    *,
    client_message_id: str | None = None,
    per_minute: int | None = None,
) -> tuple[MessageView | None, float | None]:
    """Insert a message inside the caller's transaction, after the conversation row is locked:
    the message, and what the sender's allowance holds after it (``per_minute``: taken from
    it; None: not limited).

    No message, and nothing stored, when the sender already used ``client_message_id`` here,
    or their allowance is empty.
    """
    store = backend.pick(sqlite=_store_on_sqlite, postgresql=_store_on_postgres)
    return store(
        _Send(
            MessageId(uuid4()),
            conversation_id,
            sender_id,
            content,
            client_message_id,
            {} if per_minute is None else allowance.parameters(sender_id, per_minute),
        )
    )


@dataclass(frozen=True, slots=True)
class _Send:
    """A message to store: its new id, where, from whom, what, and the sender's bucket's
    parameters (empty: not limited)."""

    message_id: MessageId
    conversation_id: ConversationId
    sender_id: ProfileId
    content: str
    client_message_id: str | None
    bucket: dict[str, object]


def _store_on_postgres(send: _Send) -> tuple[MessageView | None, float | None]:
    """One statement: the allowance taken, the message stored, the conversation's times
    moved, the NOTIFY sent, the message read back with its sender."""
    limited = bool(send.bucket)
    stored = database.execute_sql(
        _STORE_POSTGRES[send.client_message_id is not None, limited],
        {
            "id": str(send.message_id),
            "sender": str(send.sender_id),
            "content": send.content,
            "client_message_id": send.client_message_id,
            "conversation": str(send.conversation_id),
            "channel": events.CHANNEL,
            "payload": events.encode(send.conversation_id, send.message_id),
            **send.bucket,
        },
    ).fetchall()
    if not stored:
        return None, None
    # as Peewee reads these columns: the sender's id a UUID, the time in UTC (the session
    # has no time zone set; the field converts)
    m_id, m_conversation, m_content, m_created_at, m_key, p_id, *profile = stored[0][:10]
    created_at = Message.created_at.python_value(m_created_at)
    message = message_from(
        (m_id, m_conversation, m_content, created_at, m_key, UUID(str(p_id)), *profile)
    )
    return message, (float(stored[0][11]) if limited else None)


def _store_on_sqlite(send: _Send) -> tuple[MessageView | None, float | None]:
    """The same in three statements, in the unit's (serialized) transaction."""
    keyed = send.client_message_id is not None
    tokens: float | None = None
    if send.bucket:
        taken = database.execute_sql(
            allowance.TAKE[True, keyed],
            {
                **send.bucket,
                "conversation": str(send.conversation_id),
                "client_message_id": send.client_message_id,
            },
        ).fetchall()
        if not taken:
            return None, None
        tokens = float(taken[0][0])
    cursor = database.execute_sql(
        _INSERT_KEYED_MESSAGE_SQLITE if keyed else _INSERT_MESSAGE_SQLITE,
        (
            str(send.message_id),
            str(send.sender_id),
            send.content,
            send.client_message_id,
            str(send.conversation_id),
        ),
    )
    row = cursor.fetchone()
    cursor.fetchall()
    if row is None:
        return None, None
    (created_at,) = row
    database.execute_sql(
        _BUMP_SQLITE,
        (created_at, created_at, str(send.sender_id), created_at, str(send.conversation_id)),
    )
    events.message_stored(send.conversation_id, send.message_id)
    return _read_message(send.message_id), tokens  # embedded: a read costs no round trip


def _first_sent(
    conversation_id: ConversationId, sender_id: ProfileId, client_message_id: str, *, content: str
) -> MessageView | None:
    """The message the sender stored first with this client message id (a retry's answer),
    None when there is none."""
    rows = list(
        message_query()
        .where(
            Message.conversation == conversation_id,
            Message.sender == sender_id,
            Message.client_message_id == client_message_id,
        )
        .tuples()
    )
    if not rows:
        return None
    first = message_from(rows[0])
    if first.content != content:
        raise ClientMessageIdReused(
            f"clientMessageId {client_message_id!r} was already used for another message in "
            "this conversation; give each new message a new id"
        )
    return first


def validate_input(content: str, client_message_id: str | None) -> None:
    validate_content(content)
    if client_message_id is not None:
        validate_client_message_id(client_message_id)


def validate_client_message_id(client_message_id: str) -> None:
    if not client_message_id:
        raise InvalidInput("clientMessageId must not be empty")
    if len(client_message_id) > MAX_CLIENT_MESSAGE_ID_LENGTH:
        raise InvalidInput(
            f"clientMessageId is {len(client_message_id)} characters long; "
            f"at most {MAX_CLIENT_MESSAGE_ID_LENGTH} are allowed"
        )
    if not _CLIENT_MESSAGE_ID.fullmatch(client_message_id):
        raise InvalidInput(
            "clientMessageId may only contain letters A-Z and a-z, digits, '.', '_', ':' "
            "and '-' (a UUID fits)"
        )


def validate_content(content: str) -> None:
    """Content is stored exactly as sent (clients escape it on display), once it has
    something to read: not only characters that render as nothing (repo/invisible.py)."""
    if shows_nothing(content):
        raise InvalidInput("content must not be empty (or only blank or invisible characters)")
    if len(content) > MAX_MESSAGE_LENGTH:
        raise InvalidInput(
            f"content is {len(content)} characters long; at most {MAX_MESSAGE_LENGTH} are allowed"
        )
    if "\x00" in content:
        raise InvalidInput("content must not contain NUL characters")
    try:
        content.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("content must be valid Unicode text") from None


@unit_of_work
def list_messages(
    conversation_id: ConversationId, *, first: int = 20, after: str | None = None
) -> MessagePage:
    """A page of up to ``first`` messages, newest first, older than the ``after`` cursor."""
    if not 1 <= first <= MAX_PAGE_SIZE:
        raise InvalidInput(f"first must be between 1 and {MAX_PAGE_SIZE}, got {first}")
    if after is None:  # the first page, on every chat opened: rendered once
        rows = _FIRST_PAGE.rows(conversation_id, limit=first + 1)
    else:
        created_at, message_id = decode_cursor(after)
        query = message_query().where(
            Message.conversation == conversation_id,
            Tuple(Message.created_at, Message.id)
            < Tuple(Message.created_at.db_value(created_at), Message.id.db_value(message_id)),
        )
        page: Any = (
            query.order_by(Message.created_at.desc(), Message.id.desc()).limit(first + 1).tuples()
        )
        rows = list(page)
    messages = [message_from(row) for row in rows[:first]]
    return MessagePage(
        messages, has_next_page=len(rows) > first, has_previous_page=after is not None
    )


@unit_of_work
def find_messages(message_ids: Collection[MessageId]) -> dict[MessageId, MessageView]:
    """The messages found among these ids, with their senders, by id (one query)."""
    if not message_ids:
        return {}
    rows = message_query().where(Message.id.in_(list(message_ids))).tuples()
    return {message.id: message for message in map(message_from, rows)}


@unit_of_work
def newest_position(conversation_id: ConversationId) -> tuple[datetime, UUID] | None:
    """Where a conversation's newest message stands in send order, or None when it has none."""
    row: Any = (
        Message.select(Message.created_at, Message.id)
        .where(Message.conversation == conversation_id)
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(1)
        .tuples()
        .first()
    )
    return None if row is None else (row[0], row[1])


@unit_of_work
def messages_after(
    conversation_id: ConversationId, after: tuple[datetime, UUID] | None, *, limit: int = 100
) -> list[MessageView]:
    """Up to ``limit`` messages sent after the ``after`` position, oldest first (catching up)."""
    query = message_query().where(Message.conversation == conversation_id)
    if after is not None:
        query = query.where(
            Tuple(Message.created_at, Message.id)
            > Tuple(Message.created_at.db_value(after[0]), Message.id.db_value(after[1]))
        )
    rows: Any = query.order_by(Message.created_at, Message.id).limit(limit).tuples()
    return [message_from(row) for row in rows]


def _read_message(message_id: MessageId) -> MessageView:
    return message_from(message_query().where(Message.id == message_id).tuples().get())


def message_query() -> peewee.ModelSelect[Message]:
    return Message.select(
        Message.id,
        Message.conversation,
        Message.content,
        Message.created_at,
        Message.client_message_id,
        *profile_columns(Profile),
    ).join(Profile, on=(Message.sender == Profile.id))


_FIRST_PAGE = PreparedSelect(
    lambda conversation: (
        message_query()
        .where(Message.conversation == conversation)
        .order_by(Message.created_at.desc(), Message.id.desc())
    )
)


def message_from(row: Any) -> MessageView:
    message_id, conversation_id, content, created_at, client_message_id = row[:5]
    assert isinstance(created_at, datetime)
    return MessageView(
        id=MessageId(UUID(str(message_id))),
        conversation_id=ConversationId(UUID(str(conversation_id))),
        sender=profile_from(row, 5),
        content=str(content),
        created_at=created_at,
        client_message_id=client_message_id,
        cursor=encode_cursor(created_at, UUID(str(message_id))),
    )


def encode_cursor(created_at: datetime, message_id: UUID) -> str:
    raw = f"{created_at.isoformat()}|{message_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """Parse a cursor made by encode_cursor, raising InvalidInput for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at_text, id_text = raw.split("|")
        created_at = datetime.fromisoformat(created_at_text)
        message_id = UUID(id_text)
        if created_at.tzinfo is None:
            raise ValueError("naive timestamp")
        created_at = created_at.astimezone(UTC)
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        raise InvalidInput(f"invalid cursor {cursor[:64]!r}") from None
    return created_at, message_id
