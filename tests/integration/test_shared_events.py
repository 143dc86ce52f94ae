"""A subscription event executed once for many subscribers answers each as its own execution does.

Hypothesis writes ``messageAdded`` and ``inboxUpdated`` documents (aliases, ``__typename``,
nested profiles and conversations, a page of messages, the caller-dependent
``assignedConversationCount``, variables) and picks subscribers among callers of every role,
some holding the same document. Each event goes through the server's executor
(gql/graphql/shared_events.py: one execution per group that cannot differ) and, for each
subscriber alone, through Strawberry's own executor on a document parsed apart; the answers
must be the same.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from graphql import DocumentNode, ExecutionResult, parse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from gql.auth.tokens import Caller
from gql.graphql.schema import build_schema
from gql.graphql.settings import GraphQLSettings
from gql.graphql.shared_events import SharedEventExecutor, shared_payload
from gql.graphql.types import InboxItem, Message
from repo.inbox import inbox_changes
from repo.messages import send_message
from repo.users import is_admin
from tests.factories import first_contact, make_admin, make_user

pytestmark = [pytest.mark.usefixtures("db"), pytest.mark.timeout(120)]

PROFILE = st.lists(
    st.sampled_from(
        [
            "id",
            "name",
            "avatarUrl",
            "isAdmin",
            "isOnline",
            "assignedConversationCount",
            "__typename",
            "n: name",
            "c: assignedConversationCount",
        ]
    ),
    min_size=1,
    max_size=4,
    unique=True,
).map(lambda fields: "{ " + " ".join(fields) + " }")
MESSAGE = st.lists(
    st.one_of(
        st.sampled_from(
            ["id", "content", "createdAt", "clientMessageId", "__typename", "t: content"]
        ),
        PROFILE.map(lambda profile: f"sender {profile}"),
    ),
    min_size=1,
    max_size=4,
    unique_by=lambda field: field.split(" ", 1)[0],
).map(lambda fields: "{ " + " ".join(fields) + " }")
CONVERSATION = st.lists(
    st.one_of(
        st.sampled_from(["id", "createdAt", "lastMessageAt", "__typename"]),
        PROFILE.map(lambda profile: f"admin {profile}"),
        PROFILE.map(lambda profile: f"customer {profile}"),
        MESSAGE.map(lambda message: f"messages(first: 2) {{ edges {{ node {message} }} }}"),
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda field: field.split(" ", 1)[0].split("(")[0],
).map(lambda fields: "{ " + " ".join(fields) + " }")
INBOX_ITEM = st.lists(
    st.one_of(
        st.sampled_from(["id", "unreadCount", "__typename"]),
        MESSAGE.map(lambda message: f"lastMessage {message}"),
        CONVERSATION.map(lambda conversation: f"conversation {conversation}"),
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda field: field.split(" ", 1)[0],
).map(lambda fields: "{ " + " ".join(fields) + " }")
MESSAGE_DOCUMENT = MESSAGE.map(
    lambda message: f"subscription ($c: UUID!) {{ messageAdded(conversationId: $c) {message} }}"
)
INBOX_DOCUMENT = INBOX_ITEM.map(lambda item: f"subscription {{ inboxUpdated {item} }}")


@pytest.fixture
def people() -> dict[str, Any]:
    admin, other_admin = make_admin("First Admin"), make_admin("Second Admin")
    customer = make_user()
    conversation = first_contact(customer).conversation.id
    message = send_message(conversation, "hello", sender_id=customer, client_message_id="k-1")
    callers = {
        "customer": Caller("authenticated", customer, admin_lookup=is_admin),
        "admin": Caller("authenticated", admin, admin_lookup=is_admin),
        "other admin": Caller("authenticated", other_admin, admin_lookup=is_admin),
        "service": Caller("service_role"),
    }
    for caller in callers.values():  # known, as the subscription's resolver leaves it
        assert caller.is_admin in (True, False)
    changes = inbox_changes([conversation], {admin, other_admin})
    return {
        "callers": callers,
        "conversation": str(conversation),
        "message": message,
        "items": [
            changes.item(changes.conversations[0], reader) for reader in (admin, other_admin)
        ],
    }


SCHEMA = build_schema(GraphQLSettings())


async def execute(
    executor_class: type[StrawberryGraphQLCoreExecutionContext],
    document: DocumentNode,
    caller: Caller,
    variables: dict[str, Any],
    payload: Any,
) -> ExecutionResult:
    executor = executor_class.build(
        SCHEMA._schema, document, context_value={"caller": caller}, raw_variable_values=variables
    )
    assert isinstance(executor, StrawberryGraphQLCoreExecutionContext)
    result = executor.build_per_event_executor(payload).execute_operation(False)
    if inspect.isawaitable(result):
        result = await result
    assert isinstance(result, ExecutionResult)
    return result


def same_answers(
    people: dict[str, Any], text: str, subscribers: list[str], kind: str
) -> tuple[list[Any], list[Any]]:
    shared_document = parse(text)  # one parse for all, as the parse cache gives the server
    variables = {"c": people["conversation"]} if kind == "message" else {}

    async def scenario() -> tuple[list[Any], list[Any]]:
        shared, own = [], []
        for i, name in enumerate(subscribers):
            caller = people["callers"][name]
            if kind == "message":
                view = people["message"]
                payload, alone = shared_payload(view, Message.from_view), Message.from_view(view)
            else:
                view = people["items"][i % 2]  # two readers' items, equal but not the same
                payload = shared_payload(view, InboxItem.from_item, by_value=True)
                alone = InboxItem.from_item(view)
            mine = await execute(SharedEventExecutor, shared_document, caller, variables, payload)
            plain = await execute(
                StrawberryGraphQLCoreExecutionContext, parse(text), caller, variables, alone
            )
            shared.append(mine.formatted)
            own.append(plain.formatted)
        return shared, own

    return asyncio.run(scenario())


SUBSCRIBERS = st.lists(
    st.sampled_from(["customer", "admin", "other admin", "service"]), min_size=2, max_size=6
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    document=st.one_of(
        MESSAGE_DOCUMENT.map(lambda text: ("message", text)),
        INBOX_DOCUMENT.map(lambda text: ("inbox", text)),
    ),
    subscribers=SUBSCRIBERS,
)
def test_a_shared_execution_answers_each_subscriber_as_its_own_does(
    people: dict[str, Any], document: tuple[str, str], subscribers: list[str]
) -> None:
    kind, text = document
    shared, own = same_answers(people, text, subscribers, kind)
    assert shared == own
    assert all("errors" not in answer for answer in own), own


def test_callers_who_may_see_different_things_do_not_share_an_answer(
    people: dict[str, Any],
) -> None:
    text = (
        "subscription ($c: UUID!) { messageAdded(conversationId: $c) "
        "{ sender { assignedConversationCount } } }"
    )
    shared, _ = same_answers(people, text, ["admin", "customer", "service"], "message")
    counts = [a["data"]["messageAdded"]["sender"]["assignedConversationCount"] for a in shared]
    assert counts[1] is None  # the customer is not staff, after a staff caller's answer
    assert counts[0] == counts[2] is not None


def test_subscribers_with_the_same_document_share_one_execution(people: dict[str, Any]) -> None:
    text = "subscription ($c: UUID!) { messageAdded(conversationId: $c) { id content } }"
    calls = []
    original = Message.from_view

    def counted(view: Any) -> Message:
        calls.append(view)
        return original(view)

    shared_document = parse(text)
    view = people["message"]

    async def scenario() -> list[ExecutionResult]:
        answers = []
        for name in ["customer", "customer", "customer"]:
            payload = shared_payload(view, counted)
            answers.append(
                await execute(
                    SharedEventExecutor,
                    shared_document,
                    people["callers"][name],
                    {"c": people["conversation"]},
                    payload,
                )
            )
        return answers

    answers = asyncio.run(scenario())
    assert len(calls) == 1  # one object for the event
    assert answers[0].data is answers[1].data is answers[2].data  # executed once
    assert answers[0].data == {"messageAdded": {"id": str(view.id), "content": "hello"}}


def test_a_caller_whose_admin_status_is_not_known_yet_shares_nothing(
    people: dict[str, Any],
) -> None:
    text = "subscription ($c: UUID!) { messageAdded(conversationId: $c) { id } }"
    shared_document = parse(text)
    view = people["message"]
    customer = people["callers"]["customer"]
    unknown = customer.rechecked()  # as a new subscribe leaves the socket's caller

    async def scenario() -> list[ExecutionResult]:
        payload = shared_payload(view, Message.from_view)
        variables = {"c": people["conversation"]}
        return [
            await execute(SharedEventExecutor, shared_document, who, variables, payload)
            for who in (customer, unknown)
        ]

    known, fresh = asyncio.run(scenario())
    assert known.data == fresh.data
    assert known.data is not fresh.data  # executed again, with no database read to decide
    assert unknown.known_admin is None  # and none was made on the event loop
