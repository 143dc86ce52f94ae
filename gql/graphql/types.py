"""GraphQL types, built from repository views by small functions (models never leak here)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, cast
from uuid import UUID

import strawberry
from anyio import to_thread
from strawberry.types import Info

from gql.graphql import authz
from repo import admins, inbox, integrity, messages
from repo.checks import Check, run_checks
from repo.ids import ConversationId, ProfileId
from repo.inbox import Order
from repo.status import Status
from repo.views import (
    AdminConversation,
    ConversationView,
    MessagePage,
    MessageView,
    ProfileView,
)
from repo.views import (
    OrphanedConversation as OrphanedConversationView,
)
from repo.views import (
    ProfileCoverage as ProfileCoverageView,
)
from repo.views import (
    RepairReport as RepairReportView,
)


def on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


ConversationStatus = strawberry.enum(
    Status,
    name="ConversationStatus",
    description="Where a conversation's problem stands: OPEN (being worked on, or waiting), "
    "SNOOZED (parked until snoozedUntil), RESOLVED (solved; the customer's next message "
    "opens it again).",
)


InboxOrder = strawberry.enum(
    Order,
    name="InboxOrder",
    description="How the inbox is ordered: LATEST_ACTIVITY (newest activity first) or "
    "WAITING_LONGEST (the customer waiting longest for staff first).",
)


def _staff_count(caller: Any, count: Any) -> int | None:
    """A count only staff may read (None for anyone else), read off the event loop when a
    subscription's result asks for it."""

    def load() -> int | None:
        return int(count()) if authz.is_staff(caller) else None

    if on_event_loop():  # a subscription's result: the database is read off the loop
        awaitable: Any = to_thread.run_sync(load)
        return cast(int | None, awaitable)
    return load()


@strawberry.type(description="A person in a chat: a customer or an admin.")
class Profile:
    id: UUID
    name: str
    avatar_url: str
    is_admin: bool
    is_online: bool

    @strawberry.field(
        description="Conversations this profile holds as their admin (what a first contact "
        "balances); null unless the caller is staff (an admin or service_role)."
    )
    def assigned_conversation_count(self, info: Info[Any, Any]) -> int | None:
        profile_id = ProfileId(self.id)
        return _staff_count(
            info.context["caller"], lambda: admins.assigned_conversation_count(profile_id)
        )

    @strawberry.field(
        description="Of those, the OPEN ones (snoozed and resolved ones aside): what a first "
        "contact balances on; null unless the caller is staff."
    )
    def open_conversation_count(self, info: Info[Any, Any]) -> int | None:
        profile_id = ProfileId(self.id)
        return _staff_count(
            info.context["caller"], lambda: admins.open_conversation_count(profile_id)
        )

    @classmethod
    def from_view(cls, view: ProfileView) -> Profile:
        return cls(
            id=view.id,
            name=view.name,
            avatar_url=view.avatar_url,
            is_admin=view.is_admin,
            is_online=view.is_online,
        )


@strawberry.type
class Message:
    id: UUID
    sender: Profile
    content: str
    created_at: datetime
    client_message_id: str | None = strawberry.field(
        description="The clientMessageId its sender gave sendMessage, if any: a sender's "
        "client matches it with the message it shows while sending."
    )

    @classmethod
    def from_view(cls, view: MessageView) -> Message:
        return cls(
            id=view.id,
            sender=Profile.from_view(view.sender),
            content=view.content,
            created_at=view.created_at,
            client_message_id=view.client_message_id,
        )


@strawberry.type
class MessageEdge:
    node: Message
    cursor: str


@strawberry.type(description="Relay-style page info; pages run newest first.")
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None

    @classmethod
    def of(cls, cursors: list[str], *, has_next_page: bool, has_previous_page: bool) -> PageInfo:
        return cls(
            has_next_page=has_next_page,
            has_previous_page=has_previous_page,
            start_cursor=cursors[0] if cursors else None,
            end_cursor=cursors[-1] if cursors else None,
        )


@strawberry.type
class MessageConnection:
    edges: list[MessageEdge]
    page_info: PageInfo

    @classmethod
    def from_page(cls, page: MessagePage) -> MessageConnection:
        return cls(
            edges=[MessageEdge(node=Message.from_view(m), cursor=m.cursor) for m in page.messages],
            page_info=PageInfo.of(
                [m.cursor for m in page.messages],
                has_next_page=page.has_next_page,
                has_previous_page=page.has_previous_page,
            ),
        )


@strawberry.type(description="A customer's conversation with an admin.")
class Conversation:
    id: UUID
    customer: Profile
    admin: Profile
    created_at: datetime
    updated_at: datetime
    last_message_at: datetime | None
    status: Status
    snoozed_until: datetime | None = strawberry.field(
        description="When a SNOOZED conversation opens again by itself; null otherwise."
    )
    resolved_at: datetime | None = strawberry.field(
        description="When a RESOLVED conversation was resolved; null otherwise."
    )
    waiting_since: datetime | None = strawberry.field(
        description="The customer's oldest message no staff message has followed yet; null "
        "when staff spoke last or nobody has written."
    )

    @strawberry.field(description="Messages newest first; pass pageInfo.endCursor as after.")
    def messages(
        self,
        first: Annotated[int, strawberry.argument(description="1 to 100")] = 20,
        after: str | None = None,
    ) -> MessageConnection:
        def load() -> MessageConnection:
            page = messages.list_messages(ConversationId(self.id), first=first, after=after)
            return MessageConnection.from_page(page)

        if on_event_loop():  # a subscription's result (HTTP operations run in a worker thread)
            awaitable: Any = to_thread.run_sync(load)  # graphql-core awaits it; the loop stays free
            return cast(MessageConnection, awaitable)
        return load()

    @classmethod
    def from_view(cls, view: ConversationView) -> Conversation:
        return cls(
            id=view.id,
            customer=Profile.from_view(view.customer),
            admin=Profile.from_view(view.admin),
            created_at=view.created_at,
            updated_at=view.updated_at,
            last_message_at=view.last_message_at,
            status=Status(view.status),
            snoozed_until=view.snoozed_until,
            resolved_at=view.resolved_at,
            waiting_since=view.waiting_since,
        )


@strawberry.type
class AdminConversationPayload:
    conversation: Conversation
    created: bool = strawberry.field(description="True when this call created the conversation.")
    profile_created: bool = strawberry.field(
        description="True when this call created the customer's missing profile."
    )

    @classmethod
    def from_result(cls, result: AdminConversation) -> AdminConversationPayload:
        return cls(
            conversation=Conversation.from_view(result.conversation),
            created=result.created,
            profile_created=result.profile_created,
        )


@strawberry.type(description="A conversation whose customer_id has no profile.")
class OrphanedConversation:
    id: UUID
    customer_id: UUID
    created_at: datetime

    @classmethod
    def from_view(cls, view: OrphanedConversationView) -> OrphanedConversation:
        return cls(id=view.id, customer_id=view.customer_id, created_at=view.created_at)


@strawberry.type(description="The post-mortem's monitoring figures.")
class ProfileCoverage:
    profiles_count: int
    users_count: int
    conversations_count: int
    orphaned_conversations: int
    profile_coverage_percent: float | None = strawberry.field(
        description="Profiles per user in percent, 2 decimals; null when there are no users."
    )

    @classmethod
    def from_view(cls, view: ProfileCoverageView) -> ProfileCoverage:
        return cls(
            profiles_count=view.profiles_count,
            users_count=view.users_count,
            conversations_count=view.conversations_count,
            orphaned_conversations=view.orphaned_conversations,
            profile_coverage_percent=view.profile_coverage_percent,
        )


@strawberry.type(description="Data integrity checks; each field runs only when selected.")
class IntegrityReport:
    @strawberry.field
    def orphaned_conversation_count(self) -> int:
        return integrity.count_orphaned_conversations()

    @strawberry.field(description="The oldest orphaned conversations, at most 100.")
    def orphaned_conversations(self, first: int = 100) -> list[OrphanedConversation]:
        found = integrity.find_orphaned_conversations(first=first)
        return [OrphanedConversation.from_view(o) for o in found]

    @strawberry.field
    def profile_coverage(self) -> ProfileCoverage:
        return ProfileCoverage.from_view(integrity.profile_coverage())

    @strawberry.field(
        description="Every check of `helpline integrity check` (same code); strict makes "
        "users without a profile a violation."
    )
    def checks(self, strict: bool = False) -> list[IntegrityCheck]:
        return [IntegrityCheck.from_check(c) for c in run_checks(strict=strict)]


@strawberry.type(description="One integrity check: status is ok, warning or violation.")
class IntegrityCheck:
    name: str
    status: str
    summary: str
    count: int | None
    sample: list[str] = strawberry.field(description="The first offending ids (at most 10).")

    @classmethod
    def from_check(cls, check: Check) -> IntegrityCheck:
        return cls(
            name=check.name,
            status=check.status,
            summary=check.summary,
            count=check.count,
            sample=list(check.sample),
        )


@strawberry.type(description="Dry run: what an apply would do. Apply: what it did.")
class RepairReport:
    dry_run: bool
    profiles_created: int
    orphaned_conversations_before: int
    orphaned_conversations_after: int
    unrepairable_conversations: list[OrphanedConversation] = strawberry.field(
        description="Orphans that cannot be healed: their customer has no users row (at most 100)."
    )

    @classmethod
    def from_view(cls, view: RepairReportView) -> RepairReport:
        return cls(
            dry_run=view.dry_run,
            profiles_created=view.profiles_created,
            orphaned_conversations_before=view.orphaned_conversations_before,
            orphaned_conversations_after=view.orphaned_conversations_after,
            unrepairable_conversations=[
                OrphanedConversation.from_view(o) for o in view.unrepairable
            ],
        )


@strawberry.type(description="A conversation as the admins' inbox shows it.")
class InboxItem:
    id: UUID = strawberry.field(
        description="The conversation's id: one inbox item per conversation, so clients with a "
        "normalized cache (Apollo InMemoryCache, urql Graphcache) update it in place."
    )
    conversation: Conversation
    last_message: Message | None
    unread_count: int = strawberry.field(
        description="Messages from others since the reader last marked it read."
    )

    @classmethod
    def from_item(cls, item: inbox.InboxItem) -> InboxItem:
        return cls(
            id=item.conversation.id,
            conversation=Conversation.from_view(item.conversation),
            last_message=Message.from_view(item.last_message) if item.last_message else None,
            unread_count=item.unread_count,
        )


@strawberry.type
class InboxEdge:
    node: InboxItem
    cursor: str


@strawberry.type(description="Newest activity first; pass pageInfo.endCursor as after.")
class InboxConnection:
    edges: list[InboxEdge]
    page_info: PageInfo

    @classmethod
    def from_page(cls, page: inbox.InboxPage) -> InboxConnection:
        edges = [InboxEdge(node=InboxItem.from_item(i), cursor=i.cursor) for i in page.items]
        return cls(
            edges=edges,
            page_info=PageInfo.of(
                [e.cursor for e in edges],
                has_next_page=page.has_next_page,
                has_previous_page=page.has_previous_page,
            ),
        )
