"""Who may do what: every rule of the roles table, in one place.

| caller                     | may                                                               |
|----------------------------|-------------------------------------------------------------------|
| anon                       | nothing but introspection (outside production)                    |
| customer (authenticated)   | their own admin conversation: get-or-create, read, send           |
| admin (authenticated)      | every conversation; get-or-create for anyone; integrity; dry runs |
| service_role               | everything, including repairs that write                          |

A customer asking about someone else's records gets FORBIDDEN whether or not they exist,
so an id never reveals anything.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from gql.auth.tokens import ANON, AUTHENTICATED, SERVICE_ROLE, Caller
from gql.graphql.errors import BadUserInput, Forbidden, Unauthenticated
from repo.ids import CustomerId, ProfileId
from repo.views import ConversationView

KNOWN_ROLES = (ANON, AUTHENTICATED, SERVICE_ROLE)


def require_known(caller: Caller) -> None:
    """A signed-in caller of a role this API serves (UNAUTHENTICATED, FORBIDDEN)."""
    if caller.role == ANON:
        raise Unauthenticated("authentication required: send 'Authorization: Bearer <token>'")
    if caller.role not in KNOWN_ROLES:
        raise Forbidden(f"role {caller.role[:32]!r} may not use this API")


def is_staff(caller: Caller) -> bool:
    """Admins and service_role (may read every conversation and the team's figures)."""
    return caller.is_service or caller.is_admin


def customer_to_open(caller: Caller, customer_id: UUID | None) -> CustomerId:
    """Whose admin conversation the caller may read or get-or-create."""
    require_known(caller)
    if customer_id is not None and customer_id == caller.user_id:
        return caller.user_id  # their own, named: theirs to open as customer or as admin
    if is_staff(caller):
        if customer_id is None:
            raise BadUserInput("customerId is required for admin and service callers")
        return CustomerId(customer_id)
    assert caller.user_id is not None
    if customer_id is not None and customer_id != caller.user_id:
        raise Forbidden("you may only open your own conversation")
    return caller.user_id


def own_customer_id(caller: Caller, customer_id: UUID | None) -> CustomerId | None:
    """The caller's id when they open their own conversation, before their role is known.

    Their own conversation row carries their profile, admin flag included, so one read
    answers both "what is it" and "who is asking" (see Caller.learn_admin_status).
    """
    if caller.role != AUTHENTICATED or caller.user_id is None:
        return None
    return caller.user_id if customer_id in (None, caller.user_id) else None


def readable_conversation(
    caller: Caller, load: Callable[[], ConversationView | None]
) -> ConversationView | None:
    """The conversation ``load`` finds, if the caller may read it (staff: None when missing)."""
    require_known(caller)
    conversation = load()
    if conversation is not None and conversation.customer.id == caller.user_id:
        caller.learn_admin_status(conversation.customer.is_admin)  # no second read for it
    if is_staff(caller):
        return conversation
    if conversation is None or conversation.customer.id != caller.user_id:
        raise Forbidden("you may only read your own conversation")
    return conversation


def reads_as_admin(caller: Caller, conversation: ConversationView) -> bool:
    """True when the caller may read the conversation only because they are an admin."""
    return caller.role == AUTHENTICATED and conversation.customer.id != caller.user_id


def demoted() -> Forbidden:
    """What ends a live subscription whose admin was demoted since subscribing."""
    return Forbidden("you are no longer an admin: this subscription has ended")


def sender_in(caller: Caller, owner_of: Callable[[], CustomerId | None]) -> ProfileId | None:
    """Who sends when the caller writes to a conversation; ``owner_of`` finds its customer.

    None means the conversation's admin (service callers). A missing conversation is
    NOT_FOUND for staff (the repository says so) and FORBIDDEN for customers.
    """
    require_known(caller)
    if caller.is_service:
        return None
    assert caller.user_id is not None
    if owner_of() == caller.user_id or caller.is_admin:  # the owner first: no lookup
        return ProfileId(caller.user_id)
    raise Forbidden("you may only write in your own conversation")


def require_operator(caller: Caller, operation: str) -> None:
    """Integrity reads, dry-run repairs, the inbox, assignment: admins and service callers.
    ``operation``: the schema field refused, named in the message."""
    require_known(caller)
    if not is_staff(caller):
        raise Forbidden(f"{operation} is for admins and operators")


def require_repair(caller: Caller, *, dry_run: bool) -> None:
    """A repair that writes is for service callers only."""
    require_operator(caller, "repairOrphanedConversations")
    if not dry_run and not caller.is_service:
        raise Forbidden("only the service role may apply a repair; admins may dry-run it")


def inbox_reader(caller: Caller, operation: str) -> ProfileId | None:
    """Whose unread counts the inbox shows: an admin's own; a service caller's assigned admins.
    ``operation``: inbox or inboxUpdated, for the refusal's message."""
    require_operator(caller, operation)
    return None if caller.is_service else ProfileId(caller.user_id)  # type: ignore[arg-type]


def own_queue(caller: Caller, *, assigned_to_me: bool) -> ProfileId | None:
    """The admin whose conversations an inbox shows with ``assignedToMe`` (None: all)."""
    if not assigned_to_me:
        return None
    if caller.is_service or caller.user_id is None:
        raise BadUserInput("assignedToMe is for admins: service_role holds no conversations")
    return ProfileId(caller.user_id)


def admin_reader(caller: Caller) -> ProfileId:
    """Marking read is an admin's own action."""
    require_operator(caller, "markRead")
    if caller.is_service or caller.user_id is None:
        raise Forbidden("markRead records what an admin has read: use an admin's token")
    return ProfileId(caller.user_id)
