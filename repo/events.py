"""Announcing stored messages to listeners, only once their transaction commits.

PostgreSQL: `pg_notify` inside the storing transaction (delivered on commit, to every process
that LISTENs). SQLite (one process): an after-commit callback to in-process listeners.
Payloads are ids only; listeners load what they need.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from uuid import UUID

from repo.database import database, is_sqlite
from repo.ids import ConversationId, MessageId

CHANNEL = "helpline_messages"
Listener = Callable[[ConversationId, MessageId], None]

log = logging.getLogger(__name__)
_listeners: list[Listener] = []
_lock = threading.Lock()


def message_stored(conversation_id: ConversationId, message_id: MessageId) -> None:
    """Call inside the transaction that stores the message."""
    if is_sqlite():
        database.after_commit(lambda: _tell_local_listeners(conversation_id, message_id))
    else:
        database.execute_sql(
            "SELECT pg_notify(%s, %s)", (CHANNEL, encode(conversation_id, message_id))
        )


def add_local_listener(listener: Listener) -> None:
    with _lock:
        _listeners.append(listener)


def remove_local_listener(listener: Listener) -> None:
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


def _tell_local_listeners(conversation_id: ConversationId, message_id: MessageId) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(conversation_id, message_id)
        except Exception:
            log.exception("message listener failed")


def encode(conversation_id: UUID, message_id: UUID) -> str:
    return f"{conversation_id}:{message_id}"


def decode(payload: str) -> tuple[ConversationId, MessageId] | None:
    """The ids of a notification payload, or None for anything malformed."""
    try:
        conversation, message = payload.split(":")
        return ConversationId(UUID(conversation)), MessageId(UUID(message))
    except ValueError:
        return None
