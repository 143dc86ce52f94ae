"""What units of work return: frozen dataclasses, never peewee models."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from repo.ids import ConversationId, CustomerId, MessageId, ProfileId


@dataclass(frozen=True, slots=True)
class ProfileView:
    id: ProfileId
    name: str
    avatar_url: str
    is_admin: bool
    is_online: bool


@dataclass(frozen=True, slots=True)
class ConversationView:
    id: ConversationId
    customer: ProfileView
    admin: ProfileView
    created_at: datetime
    updated_at: datetime
    last_message_at: datetime | None
    status: str = "OPEN"  # OPEN, SNOOZED, RESOLVED
    snoozed_until: datetime | None = None
    resolved_at: datetime | None = None
    waiting_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class AdminConversation:
    conversation: ConversationView
    created: bool
    profile_created: bool


@dataclass(frozen=True, slots=True)
class MessageView:
    id: MessageId
    conversation_id: ConversationId
    sender: ProfileView
    content: str
    created_at: datetime
    client_message_id: str | None  # the sender's own id for the message, if it gave one
    cursor: str


@dataclass(frozen=True, slots=True)
class MessagePage:
    """A newest-first page; ``end_cursor`` continues to older messages."""

    messages: list[MessageView]
    has_next_page: bool
    has_previous_page: bool

    @property
    def start_cursor(self) -> str | None:
        return self.messages[0].cursor if self.messages else None

    @property
    def end_cursor(self) -> str | None:
        return self.messages[-1].cursor if self.messages else None


@dataclass(frozen=True, slots=True)
class OrphanedConversation:
    id: ConversationId
    customer_id: CustomerId
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ProfileCoverage:
    profiles_count: int
    users_count: int
    conversations_count: int
    orphaned_conversations: int
    profile_coverage_percent: float | None


@dataclass(frozen=True, slots=True)
class RepairReport:
    """Dry run: what an apply would do. Apply: what it did."""

    dry_run: bool
    profiles_created: int
    orphaned_conversations_before: int
    orphaned_conversations_after: int
    unrepairable: list[OrphanedConversation]
