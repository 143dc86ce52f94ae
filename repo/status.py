"""A conversation's status, changed inside a transaction that locked its row: its times, its
admin's open count (repo/counts.py) and the listeners' event move with it. The units of work
that change it on request are in repo/lifecycle.py; a customer's message reopens through
``reopen_for_customer`` (repo/messages.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum

from repo import backend, events
from repo.counts import count_opened
from repo.errors import InvalidInput
from repo.ids import ConversationId, ProfileId
from repo.models import Conversation

MAX_SNOOZE = timedelta(days=90)


class Status(StrEnum):
    OPEN = "OPEN"
    SNOOZED = "SNOOZED"
    RESOLVED = "RESOLVED"


def check_snooze_until(until: datetime, *, now: datetime | None = None) -> None:
    """InvalidInput unless ``until`` has a time zone, is in the future and at most 90 days on."""
    if until.tzinfo is None or until.utcoffset() is None:
        raise InvalidInput("until must carry a time zone (e.g. 2026-12-08T09:00:00Z)")
    now = now or datetime.now(UTC)
    if until <= now:
        raise InvalidInput("until must be in the future")
    if until > now + MAX_SNOOZE:
        raise InvalidInput(f"until must be at most {MAX_SNOOZE.days} days ahead")


def reopen_for_customer(conversation_id: ConversationId, admin_id: ProfileId, status: str) -> bool:
    """Inside the transaction that stores a customer's message, the conversation's row locked
    (``status``: read under that lock): a resolved or snoozed conversation opens again (True)."""
    if status == Status.OPEN:
        return False
    set_status(conversation_id, admin_id, Status(status), Status.OPEN, until=None)
    return True


def set_status(
    conversation_id: ConversationId,
    admin_id: ProfileId,
    status: Status,
    to: Status,
    *,
    until: datetime | None,
) -> None:
    """Inside a transaction that locked the conversation (``status``: what it is now): its
    status and times, and its admin's open count; listeners hear of it after the commit."""
    (
        Conversation.update(
            status=to.value,
            snoozed_until=until if to == Status.SNOOZED else None,
            resolved_at=backend.now() if to == Status.RESOLVED else None,
            updated_at=backend.now(),
        )
        .where(Conversation.id == conversation_id)
        .execute()
    )
    count_opened(admin_id, delta=(to == Status.OPEN) - (status == Status.OPEN))
    events.status_changed(conversation_id, status.value, to.value)
