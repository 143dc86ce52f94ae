"""Each admin's open count (admin_conversation_counts.open_count): the OPEN conversations they
hold, what a first contact balances on. Moved in the transaction of every change that opens or
closes one of their conversations, so `helpline integrity check` can compare it exactly."""

from __future__ import annotations

from repo.ids import ProfileId
from repo.models import AdminConversationCount
from repo.prepared import PreparedQuery

_OPEN_ONE_MORE = PreparedQuery(  # a conversation of this admin's opened (or handed to them open)
    lambda admin: AdminConversationCount.update(
        open_count=AdminConversationCount.open_count + 1
    ).where(AdminConversationCount.admin == admin)
)
_OPEN_ONE_LESS = PreparedQuery(  # one resolved, snoozed, or handed away open
    lambda admin: AdminConversationCount.update(
        open_count=AdminConversationCount.open_count - 1
    ).where(AdminConversationCount.admin == admin, AdminConversationCount.open_count > 0)
)


def count_opened(admin_id: ProfileId, *, delta: int) -> None:
    """Inside the transaction that opens (``delta`` 1) or closes (-1) one of the admin's
    conversations: their open count follows (their count row is there: they hold it)."""
    if delta:
        (_OPEN_ONE_MORE if delta > 0 else _OPEN_ONE_LESS).execute(admin_id)
