"""The schema: Query and Mutation resolvers, each an authorization check and a repository call."""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, Callable
from contextvars import ContextVar
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import strawberry
from anyio import to_thread
from graphql import (
    ASTValidationRule,
    DocumentNode,
    NoSchemaIntrospectionCustomRule,
    specified_rules,
)
from strawberry.extensions import MaxTokensLimiter
from strawberry.schema.config import StrawberryConfig
from strawberry.types import Info

from gql.auth.tokens import Caller
from gql.caching.lru import ByteLRU
from gql.graphql import authz
from gql.graphql.caches import ParsedDocuments, RuleClasses, ValidatedDocuments
from gql.graphql.errors import CodedInputErrors, HelplineSchema, StreamErrorCodes, coded_rules
from gql.graphql.rules import OperationLimits
from gql.graphql.settings import GraphQLSettings
from gql.graphql.shared_events import SharedEventExecutor, shared_payload
from gql.graphql.subscriptions import inbox_updates, live_messages
from gql.graphql.types import (
    AdminConversationPayload,
    Conversation,
    InboxConnection,
    InboxItem,
    IntegrityReport,
    Message,
    Profile,
    RepairReport,
)
from gql.observability.metrics import (
    CONVERSATIONS_ASSIGNED,
    CONVERSATIONS_CREATED,
    CONVERSATIONS_REOPENED,
    CONVERSATIONS_RESOLVED,
    PROFILES_SELF_HEALED,
    RESPONSE_SECONDS,
    OperationLabel,
)
from repo import admins, conversations, inbox, integrity, lifecycle, messages
from repo.allowance import Allowance, SendLimits
from repo.errors import ConversationNotFound
from repo.ids import ConversationId, CustomerId, ProfileId
from repo.inbox import Order
from repo.status import Status
from repo.users import NewUser
from repo.views import AdminConversation, ConversationView

CustomerIdArgument = Annotated[
    UUID | None,
    strawberry.argument(
        name="customerId",
        description="Defaults to the caller; required for admin and service callers.",
    ),
]
StatusArgument = Annotated[
    list[Status] | None,
    strawberry.argument(
        description="Only conversations in these statuses (none given: every status); the "
        "subscription also hears the change that takes a conversation out of them."
    ),
]
AssignedToMeArgument = Annotated[
    bool,
    strawberry.argument(
        name="assignedToMe",
        description="Only the conversations assigned to the caller (admins; not service_role).",
    ),
]
ClientMessageIdArgument = Annotated[
    str | None,
    strawberry.argument(
        name="clientMessageId",
        description="The client's own id for this message: 1 to 64 letters, digits, '.', "
        "'_', ':' or '-' (a UUID fits). A retry with the same id by the same sender in the "
        "same conversation returns the message stored first instead of storing another.",
    ),
]


def caller_of(info: Info[Any, Any]) -> Caller:
    caller: Caller = info.context["caller"]
    return caller


def find_conversation_to_open(
    caller: Caller, customer_id: UUID | None
) -> tuple[CustomerId, ConversationView | None]:
    """Whose admin conversation the caller may open, and that conversation if it exists.

    A customer opening their own costs one read: the row brings their profile's admin flag,
    which settles their role (an admin must name the customer, even themselves).
    """
    own = authz.own_customer_id(caller, customer_id)
    found = conversations.find_admin_conversation(own) if own is not None else None
    if found is not None:
        caller.learn_admin_status(found.customer.is_admin)
    customer = authz.customer_to_open(caller, customer_id)
    if customer != own:
        found = conversations.find_admin_conversation(customer)
    return customer, found


def read_admin_conversation(caller: Caller, customer_id: UUID | None) -> Conversation | None:
    """Query.adminConversation, for a caller (the resolver and the fast path both run it)."""
    _, found = find_conversation_to_open(caller, customer_id)
    return Conversation.from_view(found) if found else None


def open_admin_conversation(
    caller: Caller, customer_id: UUID | None, *, welcome_message: str
) -> AdminConversationPayload:
    """Mutation.adminConversation, for a caller (the resolver and the fast path both run it);
    ``welcome_message``: the admin's first message in a conversation it creates."""
    customer, found = find_conversation_to_open(caller, customer_id)
    if found is not None:  # the hot path: it exists, one read in all
        return AdminConversationPayload.from_result(
            AdminConversation(found, created=False, profile_created=False)
        )
    signing_up = caller.user_id == customer and caller.email is not None
    new_user = NewUser(caller.email, caller.full_name) if signing_up and caller.email else None
    result = conversations.get_or_create_admin_conversation(
        customer, welcome_message=welcome_message, new_user=new_user, known_missing=True
    )
    if result.created:
        CONVERSATIONS_CREATED.inc()
        CONVERSATIONS_ASSIGNED.labels("first_contact").inc()
    if result.profile_created:
        PROFILES_SELF_HEALED.inc()
    return AdminConversationPayload.from_result(result)


def read_conversation(caller: Caller, conversation_id: UUID) -> Conversation | None:
    """Query.conversation, for a caller (the resolver and the fast path both run it)."""
    found = authz.readable_conversation(
        caller, lambda: conversations.find_conversation(ConversationId(conversation_id))
    )
    return Conversation.from_view(found) if found else None


# What the sender's allowance holds after this thread's last send (gql/http reads it within
# the same worker thread and answers it as X-RateLimit-* headers, and Retry-After on a 429).
SEND_ALLOWANCE: ContextVar[Allowance | None] = ContextVar("send_allowance", default=None)


def send_message(
    caller: Caller,
    conversation_id: UUID,
    content: str,
    client_message_id: str | None,
    *,
    limits: SendLimits,
) -> Message:
    """Mutation.sendMessage, for a caller (the resolver and the fast path both run it).

    Who may write where is decided under the conversation's lock (one transaction with the
    send); an anonymous caller is refused before anything is locked. The message is taken from
    the sender's allowance (``limits``; service_role, writing in the admin's voice, has none)."""
    authz.require_known(caller)

    def sender_for(owner: CustomerId | None) -> ProfileId | None:  # under the row's lock
        return authz.sender_in(caller, lambda: owner)

    sent = messages.send_message(
        ConversationId(conversation_id),
        content,
        sender_for=sender_for,
        client_message_id=client_message_id,
        limits=limits,
        on_allowance=SEND_ALLOWANCE.set,
        on_reopen=CONVERSATIONS_REOPENED.labels("customer").inc,
        on_answered=RESPONSE_SECONDS.observe,
    )
    return Message.from_view(sent)


def fast_roots(
    settings: GraphQLSettings,
) -> dict[tuple[str, str], tuple[Callable[..., object], tuple[str, ...]]]:
    """Root fields the fast path may answer (gql/fastpath/plans.py): by operation type and field
    name, the function the resolver runs (with this server's settings) and its arguments, in
    the order the function takes them after the caller."""
    return {
        ("query", "adminConversation"): (read_admin_conversation, ("customerId",)),
        ("mutation", "adminConversation"): (
            functools.partial(open_admin_conversation, welcome_message=settings.welcome_message),
            ("customerId",),
        ),
        ("query", "conversation"): (read_conversation, ("id",)),
        ("mutation", "sendMessage"): (
            functools.partial(send_message, limits=settings.send_limits),
            ("conversationId", "content", "clientMessageId"),
        ),
    }


@strawberry.type
class Query:
    @strawberry.field(description="The customer's admin conversation; null while none exists.")
    def admin_conversation(
        self, info: Info[Any, Any], customer_id: CustomerIdArgument = None
    ) -> Conversation | None:
        return read_admin_conversation(caller_of(info), customer_id)

    @strawberry.field
    def conversation(
        self,
        info: Info[Any, Any],
        id: UUID,
    ) -> Conversation | None:
        return read_conversation(caller_of(info), id)

    @strawberry.field(description="The admins' inbox: conversations, newest activity first.")
    def inbox(
        self,
        info: Info[Any, Any],
        first: int = 20,
        after: str | None = None,
        assigned_to_me: AssignedToMeArgument = False,
        status: StatusArgument = None,
        order_by: Annotated[
            Order,
            strawberry.argument(
                description="LATEST_ACTIVITY (newest first), or WAITING_LONGEST: the customer "
                "waiting longest first, conversations nobody waits in after them. A cursor "
                "from one order is BAD_USER_INPUT in the other."
            ),
        ] = Order.LATEST_ACTIVITY,
    ) -> InboxConnection:
        caller = caller_of(info)
        reader = authz.inbox_reader(caller, "inbox")
        mine = authz.own_queue(caller, assigned_to_me=assigned_to_me)
        page = inbox.inbox_page(
            reader,
            first=first,
            after=after,
            assigned_to=mine,
            statuses=None if status is None else [s.value for s in status],
            order=order_by.value,
        )
        return InboxConnection.from_page(page)

    @strawberry.field(
        description="The support team: every admin, oldest first, to hand a conversation over "
        "to (admins and operators)."
    )
    def admins(self, info: Info[Any, Any]) -> list[Profile]:
        authz.require_operator(caller_of(info), "admins")
        return [Profile.from_view(view) for view in admins.admin_profiles()]

    @strawberry.field(description="Data integrity checks, for admins and operators.")
    def integrity(self, info: Info[Any, Any]) -> IntegrityReport:
        authz.require_operator(caller_of(info), "integrity")
        return IntegrityReport()


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Get or create the customer's admin conversation (idempotent); "
        "creates the customer's profile from users when it is missing."
    )
    def admin_conversation(
        self, info: Info[Any, Any], customer_id: CustomerIdArgument = None
    ) -> AdminConversationPayload:
        return open_admin_conversation(
            caller_of(info), customer_id, welcome_message=info.context["welcome_message"]
        )

    @strawberry.mutation(
        description="Send a message (1 to 4,000 characters) as the caller; "
        "service callers send as the conversation's admin. Safe to retry with a "
        "clientMessageId: the same id with other content is CLIENT_MESSAGE_ID_REUSED."
    )
    def send_message(
        self,
        info: Info[Any, Any],
        conversation_id: UUID,
        content: str,
        client_message_id: ClientMessageIdArgument = None,
    ) -> Message:
        return send_message(
            caller_of(info),
            conversation_id,
            content,
            client_message_id,
            limits=info.context["send_limits"],
        )

    @strawberry.mutation(
        description="Give the conversation to another admin (admins and service_role); to its "
        "own admin, a no-op. Both admins' inboxUpdated hear of it; earlier messages keep their "
        "senders."
    )
    def assign_conversation(
        self, info: Info[Any, Any], conversation_id: UUID, admin_id: UUID
    ) -> Conversation:
        authz.require_operator(caller_of(info), "assignConversation")
        result = conversations.assign_conversation(
            ConversationId(conversation_id), ProfileId(admin_id)
        )
        if result.moved:
            CONVERSATIONS_ASSIGNED.labels("reassigned").inc()
        return Conversation.from_view(result.conversation)

    @strawberry.mutation(
        description="Mark the conversation's problem solved (admins and service_role); the "
        "customer's next message opens it again. Resolving a resolved one changes nothing."
    )
    def resolve_conversation(self, info: Info[Any, Any], conversation_id: UUID) -> Conversation:
        authz.require_operator(caller_of(info), "resolveConversation")
        change = lifecycle.resolve_conversation(ConversationId(conversation_id))
        if change.changed:
            CONVERSATIONS_RESOLVED.labels("admin").inc()
        return Conversation.from_view(change.conversation)

    @strawberry.mutation(
        description="Park the conversation until `until` (a time with its zone, in the future, "
        "at most 90 days ahead): it opens again then, or when the customer writes. Snoozing a "
        "snoozed conversation sets the new time."
    )
    def snooze_conversation(
        self, info: Info[Any, Any], conversation_id: UUID, until: datetime
    ) -> Conversation:
        authz.require_operator(caller_of(info), "snoozeConversation")
        change = lifecycle.snooze_conversation(ConversationId(conversation_id), until)
        return Conversation.from_view(change.conversation)

    @strawberry.mutation(
        description="Open a resolved or snoozed conversation again (admins and service_role)."
    )
    def reopen_conversation(self, info: Info[Any, Any], conversation_id: UUID) -> Conversation:
        authz.require_operator(caller_of(info), "reopenConversation")
        change = lifecycle.reopen_conversation(ConversationId(conversation_id))
        if change.changed:
            CONVERSATIONS_REOPENED.labels("admin").inc()
        return Conversation.from_view(change.conversation)

    @strawberry.mutation(description="Everything in the conversation so far is read (admins).")
    def mark_read(self, info: Info[Any, Any], conversation_id: UUID) -> InboxItem:
        reader = authz.admin_reader(caller_of(info))
        return InboxItem.from_item(inbox.mark_read(ConversationId(conversation_id), reader))

    @strawberry.mutation(
        description="Create missing profiles of orphaned conversations from users. "
        "Dry run by default; idempotent. Applying it is for the service role."
    )
    def repair_orphaned_conversations(
        self, info: Info[Any, Any], dry_run: bool = True
    ) -> RepairReport:
        authz.require_repair(caller_of(info), dry_run=dry_run)
        return RepairReport.from_view(integrity.repair_orphaned_conversations(dry_run=dry_run))


async def _live_reader(caller: Caller, conversation: ConversationId) -> ProfileId | None:
    """May the caller follow the conversation live (Forbidden, or NOT_FOUND for staff, if not)?
    The admin whose admin rights must hold while they do (None: the customer, or a service)."""
    found = await to_thread.run_sync(
        authz.readable_conversation,
        caller,
        lambda: conversations.find_conversation(conversation),
    )
    if found is None:
        raise ConversationNotFound(f"conversation {conversation} not found")
    if authz.reads_as_admin(caller, found) and caller.user_id is not None:
        return ProfileId(caller.user_id)
    return None


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Messages stored in the conversation from now on, in send order, each once."
    )
    async def message_added(
        self, info: Info[Any, Any], conversation_id: UUID
    ) -> AsyncGenerator[Message, None]:
        caller = caller_of(info)
        conversation = ConversationId(conversation_id)
        admin_id = await _live_reader(caller, conversation)

        def still_admin() -> bool:
            return caller.rechecked().is_admin

        async for message in live_messages(
            info.context["hub"],
            conversation,
            admin_id=admin_id,  # re-checked once per delivered batch, for all its readers
            still_admin=still_admin if admin_id else None,
        ):
            yield shared_payload(message, Message.from_view)  # one per event, for all

    @strawberry.subscription(
        description="The conversation each time its status or its admin changes: a customer "
        "for their own conversation only (others FORBIDDEN), staff for any. Ends with "
        "RESUBSCRIBE after a server-side interruption: read the conversation and subscribe "
        "again."
    )
    async def conversation_updated(
        self, info: Info[Any, Any], conversation_id: UUID
    ) -> AsyncGenerator[Conversation, None]:
        conversation = ConversationId(conversation_id)
        admin_id = await _live_reader(caller_of(info), conversation)  # re-checked every batch
        with info.context["hub"].read_inbox(
            reader_id=None, admin_id=admin_id, watching=conversation
        ) as watcher:
            async for item in inbox_updates(watcher):
                yield shared_payload(item.conversation, Conversation.from_view)

    @strawberry.subscription(
        description="The latest state of each inbox conversation that is created, gets a "
        "message, is reassigned or changes status (admins and operators); a reader who falls "
        "behind gets each "
        "conversation once, as it stands. After a server-side interruption it ends with "
        "RESUBSCRIBE: refetch the inbox and subscribe again."
    )
    async def inbox_updated(
        self,
        info: Info[Any, Any],
        assigned_to_me: AssignedToMeArgument = False,
        status: StatusArgument = None,
    ) -> AsyncGenerator[InboxItem, None]:
        caller = caller_of(info)
        reader = await to_thread.run_sync(authz.inbox_reader, caller, "inboxUpdated")
        mine = authz.own_queue(caller, assigned_to_me=assigned_to_me)
        statuses = None if status is None else frozenset(s.value for s in status)
        # an admin (not service_role) is re-checked with every batch: demoted, it ends here
        with info.context["hub"].read_inbox(
            reader_id=reader, admin_id=reader, queue_owner=mine, statuses=statuses
        ) as subscriber:
            async for item in inbox_updates(subscriber):
                yield shared_payload(item, InboxItem.from_item, by_value=True)


def validation_rules(
    settings: GraphQLSettings, *, production: bool = False
) -> tuple[type[ASTValidationRule], ...]:
    """Every rule a document must pass: GraphQL's, the limits; in production, no introspection."""
    limits = OperationLimits(
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases,
        max_fields=settings.max_fields,
        max_cost=settings.max_validation_cost,
    )
    extra: list[type[ASTValidationRule]] = [limits.rule()]
    if production:
        extra.append(NoSchemaIntrospectionCustomRule)
    return (*coded_rules(specified_rules), *extra)


def build_schema(settings: GraphQLSettings, *, production: bool = False) -> HelplineSchema:
    """The schema with its limits and caches; in production also no introspection and no
    suggestions."""
    # Built once per schema, so ValidatedDocuments (keyed on the rule classes) keeps hitting.
    rules = validation_rules(settings, production=production)
    parsed: ByteLRU[str, DocumentNode] = ByteLRU(settings.parse_cache_bytes)
    validated: ByteLRU[tuple[str, RuleClasses], bool] = ByteLRU(settings.validation_cache_bytes)
    schema = HelplineSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        execution_context_class=SharedEventExecutor,
        config=StrawberryConfig(disable_field_suggestions=production),
        extensions=[
            lambda: CodedInputErrors(rules),
            StreamErrorCodes,
            OperationLabel,
            lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
            lambda: ParsedDocuments(parsed),
            lambda: ValidatedDocuments(validated),
        ],
    )
    # the gate and the fast path validate with these same rules, in these same caches
    schema.rules, schema.parsed_documents, schema.validated_documents = rules, parsed, validated
    return schema
