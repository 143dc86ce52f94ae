"""The GraphQL API over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import pytest
from starlette.testclient import TestClient

from gql.http.app import create_app
from gql.http.settings import Settings
from repo.ids import ConversationId
from repo.messages import send_message
from tests.conftest import TEST_JWT_SECRET, TEST_WELCOME_MESSAGE, QueryLog
from tests.e2e.conftest import GraphQLClient, service_token, user_token
from tests.factories import (
    count_rows,
    delete_profile_unchecked,
    make_admin,
    make_legacy_user,
    make_orphaned_conversation,
    make_user,
    promote,
)

GET_OR_CREATE = """
mutation Open($customerId: UUID!) {
  adminConversation(customerId: $customerId) {
    created profileCreated
    conversation {
      id lastMessageAt
      customer { id name isAdmin }
      admin { id name isAdmin }
      messages(first: 5) { edges { cursor node { content sender { name } } } }
    }
  }
}"""
SEND = """
mutation Send($conversationId: UUID!, $content: String!) {
  sendMessage(conversationId: $conversationId, content: $content) {
    id content createdAt sender { id }
  }
}"""
SEND_ONCE = """
mutation Send($conversationId: UUID!, $content: String!, $clientMessageId: String) {
  sendMessage(conversationId: $conversationId, content: $content,
              clientMessageId: $clientMessageId) {
    id content createdAt clientMessageId sender { id }
  }
}"""
MESSAGES = """
query Page($id: UUID!, $first: Int!, $after: String) {
  conversation(id: $id) {
    customer { name } admin { name }
    messages(first: $first, after: $after) {
      edges { cursor node { id content sender { name } } }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
  }
}"""


def test_customer_without_profile_gets_profile_and_conversation(client: GraphQLClient) -> None:
    make_admin("Ada Admin")
    customer_id = make_legacy_user(full_name="Lee Legacy")

    payload = client.data(GET_OR_CREATE, customerId=str(customer_id))["adminConversation"]

    assert (payload["created"], payload["profileCreated"]) == (True, True)
    conversation = payload["conversation"]
    assert conversation["customer"] == {
        "id": str(customer_id),
        "name": "Lee Legacy",
        "isAdmin": False,
    }
    assert conversation["admin"]["name"] == "Ada Admin"
    assert [e["node"]["sender"]["name"] for e in conversation["messages"]["edges"]] == ["Ada Admin"]

    again = client.data(GET_OR_CREATE, customerId=str(customer_id))["adminConversation"]
    assert again["conversation"]["id"] == conversation["id"]
    assert (again["created"], again["profileCreated"]) == (False, False)


def test_the_query_reads_without_creating(client: GraphQLClient) -> None:
    make_admin()
    customer_id = str(make_user())
    query = "query ($c: UUID!) { adminConversation(customerId: $c) { id } }"

    assert client.data(query, c=customer_id) == {"adminConversation": None}
    assert count_rows("conversations") == 0

    created = client.data(GET_OR_CREATE, customerId=customer_id)["adminConversation"]
    assert (
        client.data(query, c=customer_id)["adminConversation"]["id"]
        == created["conversation"]["id"]
    )


def test_messages_are_sent_and_paged_newest_first(client: GraphQLClient) -> None:
    make_admin()
    conversation_id = client.data(GET_OR_CREATE, customerId=str(make_user()))["adminConversation"][
        "conversation"
    ]["id"]
    for text in ["one", "two", "three"]:
        client.data(SEND, conversationId=conversation_id, content=text)

    first = client.data(MESSAGES, id=conversation_id, first=2)["conversation"]["messages"]
    rest = client.data(MESSAGES, id=conversation_id, first=2, after=first["pageInfo"]["endCursor"])[
        "conversation"
    ]["messages"]

    assert [e["node"]["content"] for e in first["edges"]] == ["three", "two"]
    assert first["pageInfo"]["hasNextPage"] is True
    assert rest["edges"][0]["node"]["content"] == "one"
    assert rest["pageInfo"]["hasNextPage"] is False
    assert rest["pageInfo"]["hasPreviousPage"] is True


@pytest.mark.parametrize("reader", ["service", "customer"])
def test_a_conversation_with_profiles_and_a_page_of_messages_costs_two_queries(
    client: GraphQLClient, queries: QueryLog, reader: str
) -> None:
    make_admin()
    customer = make_user()
    conversation_id = client.data(GET_OR_CREATE, customerId=str(customer))["adminConversation"][
        "conversation"
    ]["id"]
    for i in range(30):
        send_message(ConversationId(conversation_id), f"message {i}", sender_id=None)
    as_reader = client if reader == "service" else client.as_(user_token(customer))

    counts = {}
    for size in (1, 20):
        queries.statements.clear()
        page = as_reader.data(MESSAGES, id=conversation_id, first=size)["conversation"]
        assert len(page["messages"]["edges"]) == size
        counts[size] = len(queries.statements)

    assert counts == {1: 2, 20: 2}, queries.statements  # the conversation, then one page


def test_operators_read_integrity_and_dry_run_the_repair(client: GraphQLClient) -> None:
    admin_id = make_admin()
    orphan = make_orphaned_conversation(make_user(), admin_id)
    integrity = client.data("""{ integrity {
        orphanedConversationCount orphanedConversations(first: 10) { id customerId createdAt }
        profileCoverage { profilesCount usersCount conversationsCount orphanedConversations
                          profileCoveragePercent } } }""")["integrity"]
    assert integrity["orphanedConversationCount"] == 1
    assert integrity["orphanedConversations"][0]["id"] == str(orphan)
    assert integrity["profileCoverage"] == {
        "profilesCount": 1,
        "usersCount": 2,
        "conversationsCount": 1,
        "orphanedConversations": 1,
        "profileCoveragePercent": 50.0,
    }

    repair = (
        "mutation ($dry: Boolean!) { repairOrphanedConversations(dryRun: $dry) { dryRun "
        "profilesCreated orphanedConversationsBefore orphanedConversationsAfter "
        "unrepairableConversations { id } } }"
    )
    dry = client.data(repair.replace("($dry: Boolean!)", "").replace("(dryRun: $dry)", ""))
    assert dry["repairOrphanedConversations"] == {
        "dryRun": True,
        "profilesCreated": 1,
        "orphanedConversationsBefore": 1,
        "orphanedConversationsAfter": 0,
        "unrepairableConversations": [],
    }
    assert count_rows("profiles") == 1
    assert client.data("{ integrity { orphanedConversationCount } }") == {
        "integrity": {"orphanedConversationCount": 1}
    }
    applied = client.data(repair, dry=False)["repairOrphanedConversations"]
    assert (applied["profilesCreated"], applied["orphanedConversationsAfter"]) == (1, 0)


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ('mutation { adminConversation(customerId: "not-a-uuid") { created } }', {}),
        ("mutation ($c: UUID!) { adminConversation(customerId: $c) { created } }", {"c": "42"}),
        ("mutation ($c: UUID!) { adminConversation(customerId: $c) { created } }", {}),
        ('{ conversation(id: "00000000-0000-4000-8000-00000000000g") { id } }', {}),
    ],
)
def test_malformed_ids_are_bad_user_input(
    client: GraphQLClient, query: str, variables: dict[str, str]
) -> None:
    error = client.error(query, **variables)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


INVISIBLE = [
    "\u200b\u200b",  # zero-width spaces (Cf)
    " \t\n\u3000\u2028",  # whitespace and separators (Zs, Zl)
    "\x07\x1b",  # control characters (Cc)
    "\u200d\u2060\ufeff\u202e",  # joiners, a BOM, a direction override (Cf)
    "\u115f\u1160\u3164\uffa0\u2800",  # blank fillers (Hangul, Braille)
    "\u034f\ufe0f\u17b4\u180b\U000e0100\u0301",  # joiners, variation selectors, marks
    "\u0301 \u20dd\n\u0903",  # combining marks alone (Mn, Me, Mc), between separators
]


@pytest.mark.parametrize(
    ("content", "words"),
    [("", "empty"), ("x" * 4001, "4001"), *((blank, "empty") for blank in INVISIBLE)],
)
def test_empty_or_overlong_messages_are_bad_user_input(
    client: GraphQLClient, content: str, words: str
) -> None:
    make_admin()
    conversation_id = client.data(GET_OR_CREATE, customerId=str(make_user()))["adminConversation"][
        "conversation"
    ]["id"]

    error = client.error(SEND, conversationId=conversation_id, content=content)

    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert words in error["message"]
    assert count_rows("messages") == 1


@pytest.mark.parametrize(
    "content",
    ["a\u200b", "\u3164x", "<b>hi</b> & \u202e", "\U0001f44b", "\ue000", "e\u0301", "\u2764\ufe0f"],
)
def test_content_with_something_to_read_is_stored_exactly_as_sent(
    client: GraphQLClient, content: str
) -> None:
    make_admin()
    conversation_id = client.data(GET_OR_CREATE, customerId=str(make_user()))["adminConversation"][
        "conversation"
    ]["id"]

    sent = client.data(SEND, conversationId=conversation_id, content=content)["sendMessage"]

    assert sent["content"] == content


@pytest.mark.parametrize(("first", "after"), [(0, None), (101, None), (5, "not-a-cursor")])
def test_bad_page_arguments_are_bad_user_input(
    client: GraphQLClient, first: int, after: str | None
) -> None:
    make_admin()
    conversation_id = client.data(GET_OR_CREATE, customerId=str(make_user()))["adminConversation"][
        "conversation"
    ]["id"]

    error = client.error(MESSAGES, id=conversation_id, first=first, after=after)

    assert error["extensions"]["code"] == "BAD_USER_INPUT"


def test_unknown_customer_is_customer_not_found(client: GraphQLClient) -> None:
    make_admin()
    error = client.error(GET_OR_CREATE, customerId=str(uuid4()))
    assert error["extensions"]["code"] == "CUSTOMER_NOT_FOUND"
    assert count_rows("profiles") == 1


def test_no_admin_is_no_admin_available_and_nothing_is_written(client: GraphQLClient) -> None:
    customer_id = make_legacy_user()
    error = client.error(GET_OR_CREATE, customerId=str(customer_id))
    assert error["extensions"]["code"] == "NO_ADMIN_AVAILABLE"
    assert (count_rows("profiles"), count_rows("conversations")) == (0, 0)


def test_sending_to_a_missing_conversation_is_not_found(client: GraphQLClient) -> None:
    error = client.error(SEND, conversationId=str(uuid4()), content="hello")
    assert error["extensions"]["code"] == "NOT_FOUND"


def test_a_missing_conversation_reads_as_null(client: GraphQLClient) -> None:
    assert client.data("query ($id: UUID!) { conversation(id: $id) { id } }", id=str(uuid4())) == {
        "conversation": None
    }


def test_unknown_fields_and_syntax_errors_have_codes(client: GraphQLClient) -> None:
    assert client.error("{ nope }")["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert client.error("{ conversation(")["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"


def test_mutations_are_refused_over_get_and_write_nothing(client: GraphQLClient) -> None:
    make_admin()
    customer_id = make_legacy_user()
    mutation = f'mutation {{ adminConversation(customerId: "{customer_id}") {{ created }} }}'

    response = client.http.get("/graphql", params={"query": mutation})

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    assert (count_rows("profiles"), count_rows("conversations")) == (1, 0)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_subscription_over_http_is_told_to_use_the_websocket(
    client: GraphQLClient, method: str
) -> None:
    query = "subscription { inboxUpdated { unreadCount } }"
    if method == "GET":
        response = client.http.get("/graphql", params={"query": query}, headers=client.headers)
    else:
        response = client.http.post("/graphql", json={"query": query}, headers=client.headers)

    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "WebSocket" in error["message"]
    assert "data" not in response.json()


def test_queries_work_over_get_and_the_playground_is_served(client: GraphQLClient) -> None:
    response = client.http.get(
        "/graphql",
        params={"query": "{ integrity { orphanedConversationCount } }"},
        headers=client.headers,
    )
    assert response.json() == {"data": {"integrity": {"orphanedConversationCount": 0}}}

    page = client.http.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()


def test_a_body_that_is_not_json_is_a_coded_400(client: GraphQLClient) -> None:
    response = client.http.post(
        "/graphql", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


def test_unexpected_failures_are_masked_and_logged_with_the_request_id(
    tmp_path,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    unmigrated = Settings.of(
        database_url=f"sqlite:///{tmp_path / 'empty.db'}", jwt_secret=TEST_JWT_SECRET
    )
    with TestClient(create_app(unmigrated), raise_server_exceptions=False) as http:
        caplog.set_level(logging.ERROR, logger="helpline.errors")
        response = http.post(
            "/graphql",
            json={"query": "{ integrity { orphanedConversationCount } }"},
            headers={"x-request-id": "req-123", "authorization": f"Bearer {service_token()}"},
        )

    assert response.status_code == 200
    (error,) = response.json()["errors"]
    assert error["message"] == "Internal server error"
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": "req-123"}
    assert "no such table" not in response.text and "SELECT" not in response.text
    assert response.headers["x-request-id"] == "req-123"
    assert any("req-123" in r.getMessage() and r.exc_info for r in caplog.records)


def test_an_escaped_foreign_key_violation_is_masked_and_logged_with_its_constraint(
    client: GraphQLClient, caplog: pytest.LogCaptureFixture
) -> None:
    admin_id = make_admin()
    conversation_id = client.data(GET_OR_CREATE, customerId=str(make_user()))["adminConversation"][
        "conversation"
    ]["id"]
    delete_profile_unchecked(admin_id)  # legacy data: the assigned admin's profile is gone
    caplog.set_level(logging.ERROR)

    error = client.error(SEND, conversationId=conversation_id, content="still there?")

    assert error["message"] == "Internal server error"
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert count_rows("messages") == 1
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "sqlstate=23503" in logged or "SQLITE_CONSTRAINT_FOREIGNKEY" in logged
    if "23503" in logged:
        assert "constraint=messages_sender_id_fkey" in logged


def test_a_customer_whose_profile_is_gone_can_still_write(client: GraphQLClient) -> None:
    make_admin()
    customer_id = make_user()
    conversation_id = client.data(GET_OR_CREATE, customerId=str(customer_id))["adminConversation"][
        "conversation"
    ]["id"]
    delete_profile_unchecked(customer_id)

    sent = client.as_(user_token(customer_id)).data(
        SEND, conversationId=conversation_id, content="hello again"
    )

    assert sent["sendMessage"]["sender"]["id"] == str(customer_id)
    assert count_rows("profiles") == 2


HOT = "mutation { adminConversation { conversation { id lastMessageAt admin { name } } } }"
HOT_READ = "{ adminConversation { id lastMessageAt admin { name } } }"


@pytest.mark.parametrize(
    ("operation", "conversation_of"),
    [
        (HOT, lambda data: data["adminConversation"]["conversation"]),
        (HOT_READ, lambda data: data["adminConversation"]),
    ],
    ids=["mutation", "query"],
)
def test_a_customer_opening_their_existing_conversation_costs_one_read(
    client: GraphQLClient,
    queries: QueryLog,
    operation: str,
    conversation_of: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    make_admin()
    customer = make_user()
    as_customer = client.as_(user_token(customer))
    opened = as_customer.data(HOT)["adminConversation"]["conversation"]
    queries.statements.clear()

    again = conversation_of(as_customer.data(operation))

    assert again == opened
    assert len(queries.statements) == 1, queries.statements  # no role lookup, no transaction
    assert queries.statements[0].lstrip().upper().startswith("SELECT")


def test_an_admin_with_a_conversation_of_their_own_must_still_name_the_customer(
    client: GraphQLClient,
) -> None:
    make_admin("The Other Admin")
    admin = make_user(full_name="Once A Customer")
    client.as_(user_token(admin)).data(HOT)  # opened while still a customer
    promote(admin)

    error = client.as_(user_token(admin)).error(HOT)

    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "customerId is required" in error["message"]


def test_a_retried_send_with_a_client_message_id_returns_the_first_message(
    client: GraphQLClient,
) -> None:
    make_admin()
    customer = make_user()
    as_customer = client.as_(user_token(customer))
    conversation_id = as_customer.data(HOT)["adminConversation"]["conversation"]["id"]
    key = str(uuid4())
    send = {"conversationId": conversation_id, "content": "Where is my order?"}

    first = as_customer.data(SEND_ONCE, **send, clientMessageId=key)["sendMessage"]
    opened = as_customer.data(HOT_READ)["adminConversation"]
    retry = as_customer.data(SEND_ONCE, **send, clientMessageId=key)["sendMessage"]

    assert retry == first
    assert first["clientMessageId"] == key
    assert as_customer.data(HOT_READ)["adminConversation"] == opened  # lastMessageAt unchanged
    assert count_rows("messages") == 2
    page = as_customer.data(MESSAGES, id=conversation_id, first=5)["conversation"]["messages"]
    assert [e["node"]["content"] for e in page["edges"]] == [
        "Where is my order?",
        TEST_WELCOME_MESSAGE,
    ]


def test_other_content_under_a_used_client_message_id_is_client_message_id_reused(
    client: GraphQLClient,
) -> None:
    make_admin()
    conversation_id = client.data(GET_OR_CREATE, customerId=str(make_user()))["adminConversation"][
        "conversation"
    ]["id"]
    client.data(SEND_ONCE, conversationId=conversation_id, content="one", clientMessageId="m-1")

    error = client.error(
        SEND_ONCE, conversationId=conversation_id, content="two", clientMessageId="m-1"
    )

    assert error["extensions"]["code"] == "CLIENT_MESSAGE_ID_REUSED"
    assert "m-1" in error["message"]
    assert count_rows("messages") == 2


@pytest.mark.parametrize(
    ("client_message_id", "words"),
    [("", "empty"), ("x" * 65, "65 characters"), ("two words", "only contain"), (42, "String")],
)
def test_malformed_client_message_ids_are_bad_user_input(
    client: GraphQLClient, client_message_id: object, words: str
) -> None:
    make_admin()
    conversation_id = client.data(GET_OR_CREATE, customerId=str(make_user()))["adminConversation"][
        "conversation"
    ]["id"]

    error = client.error(
        SEND_ONCE, conversationId=conversation_id, content="hi", clientMessageId=client_message_id
    )

    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert words in error["message"]
    assert count_rows("messages") == 1


def test_messages_read_back_with_their_client_message_id(client: GraphQLClient) -> None:
    make_admin()
    conversation_id = client.data(GET_OR_CREATE, customerId=str(make_user()))["adminConversation"][
        "conversation"
    ]["id"]
    client.data(SEND_ONCE, conversationId=conversation_id, content="keyed", clientMessageId="k")
    client.data(SEND, conversationId=conversation_id, content="plain")
    page = """query ($id: UUID!) { conversation(id: $id) {
        messages(first: 2) { edges { node { content clientMessageId } } } } }"""

    edges = client.data(page, id=conversation_id)["conversation"]["messages"]["edges"]

    assert [e["node"] for e in edges] == [
        {"content": "plain", "clientMessageId": None},
        {"content": "keyed", "clientMessageId": "k"},
    ]


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize(
    ("accept", "playground"),
    [
        (BROWSER_ACCEPT, True),
        ("text/html", True),
        ("application/json", False),
        ("application/graphql-response+json, text/html;q=0.5", False),
        ("*/*", False),  # curl, httpx: the query runs
        ("", False),
        ("text/html;q=0.5, application/json", False),
    ],
)
def test_a_query_link_opens_the_playground_for_browsers_and_runs_for_api_clients(
    client: GraphQLClient, accept: str, playground: bool
) -> None:
    response = client.http.get(
        "/graphql", params={"query": "{ __typename }"}, headers={"accept": accept}
    )

    assert response.status_code == 200
    if playground:
        assert response.headers["content-type"].startswith("text/html")
        assert "parameters.query" in response.text  # GraphiQL fills the query in
    else:
        assert response.json() == {"data": {"__typename": "Query"}}
