"""The schema: Query and Mutation resolvers, each one call into the repository."""

from __future__ import annotations

from uuid import UUID

import strawberry
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig

from gql.errors import CodedInputErrors, HelplineSchema
from gql.types import (
    AdminConversationPayload,
    Conversation,
    IntegrityReport,
    Message,
    RepairReport,
)
from repo import conversations, integrity, messages
from repo.ids import ConversationId, CustomerId


@strawberry.type
class Query:
    @strawberry.field(description="The customer's admin conversation; null while none exists.")
    def admin_conversation(self, customer_id: UUID) -> Conversation | None:
        found = conversations.find_admin_conversation(CustomerId(customer_id))
        return Conversation.from_view(found) if found else None

    @strawberry.field
    def conversation(self, id: UUID) -> Conversation | None:
        found = conversations.find_conversation(ConversationId(id))
        return Conversation.from_view(found) if found else None

    @strawberry.field
    def integrity(self) -> IntegrityReport:
        return IntegrityReport()


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Get or create the customer's admin conversation (idempotent); "
        "creates the customer's profile from users when it is missing."
    )
    def admin_conversation(self, customer_id: UUID) -> AdminConversationPayload:
        result = conversations.get_or_create_admin_conversation(CustomerId(customer_id))
        return AdminConversationPayload.from_result(result)

    @strawberry.mutation(description="Send a message (1 to 4,000 characters) as the customer.")
    def send_message(self, conversation_id: UUID, content: str) -> Message:
        sent = messages.send_message(ConversationId(conversation_id), content)
        return Message.from_view(sent)

    @strawberry.mutation(
        description="Create missing profiles of orphaned conversations from users. "
        "Dry run by default; idempotent."
    )
    def repair_orphaned_conversations(self, dry_run: bool = True) -> RepairReport:
        return RepairReport.from_view(integrity.repair_orphaned_conversations(dry_run=dry_run))


schema = HelplineSchema(
    query=Query,
    mutation=Mutation,
    config=StrawberryConfig(disable_field_suggestions=False),
    extensions=[
        CodedInputErrors,
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
    ],
)
