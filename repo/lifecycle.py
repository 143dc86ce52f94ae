"""A conversation's life: open, snoozed until a time, resolved; and reopened.

A customer keeps one conversation for good; what ends is a problem, not the conversation. Staff
resolve it (``resolve_conversation``), park it until a time (``snooze_conversation``) or open it
again (``reopen_conversation``); a customer's message reopens it in the transaction that stores
the message (repo/status.py's ``reopen_for_customer``, called by repo/messages.py); a
snoozed one wakes at its time (``wake_snoozed``, which every server runs every few seconds).
Each change locks the conversation's row, moves its admin's open count in the same
transaction (a first contact balances on open conversations: repo/conversations.py) and tells
listeners once it commits. Asking for the state a conversation is already in changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from peewee import fn

from repo import backend
from repo.conversations import find_conversation
from repo.errors import ConversationNotFound
from repo.ids import ConversationId, ProfileId
from repo.models import Conversation
from repo.status import Status, check_snooze_until, set_status
from repo.units import unit_of_work
from repo.views import ConversationView


@dataclass(frozen=True, slots=True)
class StatusChange:
    conversation: ConversationView  # as it is now
    changed: bool  # False: it was in that state already


@unit_of_work
def resolve_conversation(conversation_id: ConversationId) -> StatusChange:
    """Mark the conversation's problem solved (a no-op when it is resolved already)."""
    return _change(conversation_id, Status.RESOLVED)


@unit_of_work
def snooze_conversation(conversation_id: ConversationId, until: datetime) -> StatusChange:
    """Park the conversation until ``until`` (aware, in the future, at most 90 days ahead);
    snoozing a snoozed conversation sets the new time."""
    check_snooze_until(until)
    until = until.astimezone(UTC)  # to the millisecond, as both backends store it
    until = until.replace(microsecond=until.microsecond // 1000 * 1000)
    return _change(conversation_id, Status.SNOOZED, until=until)


@unit_of_work
def reopen_conversation(conversation_id: ConversationId) -> StatusChange:
    """Open the conversation again (a no-op when it is open)."""
    return _change(conversation_id, Status.OPEN)


@dataclass(frozen=True, slots=True)
class StatusFigures:
    by_status: dict[str, int]  # every status, 0 where none
    oldest_waiting_since: datetime | None  # among conversations not resolved


@unit_of_work
def status_figures() -> StatusFigures:
    """How many conversations are in each status, and since when the longest-waiting customer
    of an open or snoozed one waits (an index range read: conversations_waiting_since_idx)."""
    rows: Any = (
        Conversation.select(Conversation.status, fn.COUNT(Conversation.id))
        .group_by(Conversation.status)
        .tuples()
    )
    earliest = (
        Conversation.select(fn.MIN(Conversation.waiting_since))
        .where(Conversation.waiting_since.is_null(False), Conversation.status != Status.RESOLVED)
        .scalar()
    )
    oldest = Conversation.waiting_since.python_value(earliest)  # SQLite's text, as the field reads
    return StatusFigures({s.value: 0 for s in Status} | dict(rows), oldest)


WAKE_BATCH = 500


@unit_of_work
def wake_snoozed(*, batch_size: int = WAKE_BATCH) -> int:
    """Open the snoozed conversations whose time has come (at most ``batch_size``, the ones due
    longest first); how many. Any number of processes may run it at once: each due row is
    locked by one (the others skip it) and changed only while it is still snoozed, so each
    conversation wakes once, with one event."""
    due = Conversation.select(Conversation.id, Conversation.admin).where(
        Conversation.status == Status.SNOOZED, Conversation.snoozed_until <= backend.now()
    )
    query = due.order_by(Conversation.snoozed_until)
    return _change_each(query, Status.SNOOZED, Status.OPEN, batch_size=batch_size)


@unit_of_work
def auto_resolve(after: timedelta, *, batch_size: int = WAKE_BATCH) -> int:
    """Resolve open conversations whose last message is staff's and older than ``after`` (at
    most ``batch_size``, the quietest first); how many. Never one whose customer waits (their
    message is the last unanswered one), never a snoozed or resolved one. Rows another
    process holds are skipped (they are being changed, or auto-resolved there), so any number
    of processes may run it, and a database with years of history is resolved a batch a pass."""
    quiet = Conversation.select(Conversation.id, Conversation.admin).where(
        Conversation.status == Status.OPEN,
        Conversation.waiting_since.is_null(),
        Conversation.last_message_at <= backend.ago(after.total_seconds()),
    )
    query = quiet.order_by(Conversation.last_message_at)
    return _change_each(query, Status.OPEN, Status.RESOLVED, batch_size=batch_size)


def _change_each(query: Any, status: Status, to: Status, *, batch_size: int = WAKE_BATCH) -> int:
    """In one transaction: the first ``batch_size`` rows of ``query`` (id, admin), those no
    other transaction holds, each from ``status`` to ``to``; how many."""
    with backend.write_transaction():
        rows = backend.for_update(query.limit(batch_size), skip_locked=True).tuples()
        taken: list[tuple[Any, Any]] = list(rows)
        for conversation_id, admin_id in taken:
            set_status(
                ConversationId(UUID(str(conversation_id))),
                ProfileId(UUID(str(admin_id))),
                status,
                to,
                until=None,
            )
    return len(taken)


def _change(
    conversation_id: ConversationId, to: Status, *, until: datetime | None = None
) -> StatusChange:
    with backend.write_transaction():
        query = Conversation.select(
            Conversation.admin, Conversation.status, Conversation.snoozed_until
        ).where(Conversation.id == conversation_id)
        found: Any = list(backend.for_update(query).tuples())
        if not found:
            raise ConversationNotFound(f"conversation {conversation_id} not found")
        ((admin, status, snoozed_until),) = found
        changed = status != to or (to == Status.SNOOZED and snoozed_until != until)
        if changed:
            set_status(
                conversation_id, ProfileId(UUID(str(admin))), Status(status), to, until=until
            )
    now = find_conversation(conversation_id)
    assert now is not None  # a conversation is never deleted
    return StatusChange(now, changed)
