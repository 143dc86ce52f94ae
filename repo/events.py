"""Announcing what changed to listeners, only once its transaction commits: a message stored,
a conversation given to another admin.

PostgreSQL: `pg_notify` inside the transaction (delivered on commit, to every process that
LISTENs). SQLite (one process): an after-commit callback to in-process listeners. Both carry
the same payload, ids only (``encode``/``decode``); listeners load what they need.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

from repo import backend
from repo.ids import ConversationId, MessageId, ProfileId

CHANNEL = "helpline_messages"
STATUSES = ("OPEN", "SNOOZED", "RESOLVED")


@dataclass(frozen=True, slots=True)
class MessageStored:
    conversation_id: ConversationId
    message_id: MessageId


@dataclass(frozen=True, slots=True)
class ConversationReassigned:
    conversation_id: ConversationId
    previous_admin: ProfileId
    new_admin: ProfileId


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """A conversation resolved, snoozed or opened again: what it was, what it is now."""

    conversation_id: ConversationId
    previous: str
    status: str


Event = MessageStored | ConversationReassigned | StatusChanged
Listener = Callable[[Event], None]

log = logging.getLogger(__name__)
_listeners: list[Listener] = []
_lock = threading.Lock()


def message_stored(conversation_id: ConversationId, message_id: MessageId) -> None:
    """Call inside the transaction that stores the message (SQLite; PostgreSQL's message store
    notifies in its own statement, with ``encode``)."""
    _announce(MessageStored(conversation_id, message_id))


def conversation_reassigned(
    conversation_id: ConversationId, previous_admin: ProfileId, new_admin: ProfileId
) -> None:
    """Call inside the transaction that gives the conversation to ``new_admin``."""
    _announce(ConversationReassigned(conversation_id, previous_admin, new_admin))


def status_changed(conversation_id: ConversationId, previous: str, status: str) -> None:
    """Call inside the transaction that changes the conversation's status."""
    _announce(StatusChanged(conversation_id, previous, status))


def _announce(event: Event) -> None:
    backend.publish(CHANNEL, encode_event(event), in_process=lambda: _tell_local_listeners(event))


def add_local_listener(listener: Listener) -> None:
    with _lock:
        _listeners.append(listener)


def remove_local_listener(listener: Listener) -> None:
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


def _tell_local_listeners(event: Event) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            log.exception("message listener failed")


def encode(conversation_id: UUID, message_id: UUID) -> str:
    """A stored message's payload: ``<conversation>:<message>``."""
    return f"{conversation_id}:{message_id}"


def encode_event(event: Event) -> str:
    """``<conversation>:<message>``, ``<conversation>:<previous admin>><new admin>``, or
    ``<conversation>:status:<previous>:<status>``. A kind added later must not read as an
    earlier one to a server of the release before it (a rolling deploy runs both): those split
    a payload at ':' into exactly two parts and ignore anything else, so new kinds have more."""
    if isinstance(event, MessageStored):
        return encode(event.conversation_id, event.message_id)
    if isinstance(event, StatusChanged):
        return f"{event.conversation_id}:status:{event.previous}:{event.status}"
    return f"{event.conversation_id}:{event.previous_admin}>{event.new_admin}"


def decode(payload: str) -> Event | None:
    """The event of a notification payload, or None for anything malformed."""
    try:
        parts = payload.split(":")
        if len(parts) == 4 and parts[1] == "status" and {*parts[2:]} <= {*STATUSES}:
            return StatusChanged(ConversationId(UUID(parts[0])), parts[2], parts[3])
        conversation, rest = parts
        if ">" in rest:
            previous, new = rest.split(">")
            return ConversationReassigned(
                ConversationId(UUID(conversation)), ProfileId(UUID(previous)), ProfileId(UUID(new))
            )
        return MessageStored(ConversationId(UUID(conversation)), MessageId(UUID(rest)))
    except ValueError:
        return None
