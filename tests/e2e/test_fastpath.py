"""The fast path answers exactly as the generic executor does, and only what it can.

Every case runs against two apps on the same database: one with the fast path, one without.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import pytest
from starlette.testclient import TestClient
from strawberry.extensions import SchemaExtension

from gql.fastpath.plans import UncoveredExtension
from gql.graphql import schema as schema_module
from gql.graphql.settings import GraphQLSettings
from gql.http import app as app_module
from gql.http.app import create_app
from gql.http.settings import Settings
from repo.ids import ConversationId, ProfileId
from repo.messages import send_message
from tests.e2e.conftest import Pair, answered, same, service_token, user_token
from tests.factories import first_contact, make_admin, make_legacy_user, make_user
from tests.faults import holding_the_profile_lock

OWN = "mutation { adminConversation { conversation { id lastMessageAt admin { name } } } }"
OWN_READ = "{ adminConversation { id lastMessageAt admin { name } } }"
BY_VARIABLE = (
    "mutation ($c: UUID!) { adminConversation(customerId: $c) "
    "{ conversation { id lastMessageAt admin { name } } } }"
)
READ_BY_VARIABLE = "query ($c: UUID) { adminConversation(customerId: $c) { id } }"
EVERYTHING = """mutation Open($c: UUID) {
  chat: adminConversation(customerId: $c) {
    __typename created profileCreated
    conversation {
      __typename id createdAt updatedAt lastMessageAt
      me: customer { id name avatarUrl isAdmin isOnline __typename }
      admin { id name avatarUrl isAdmin isOnline }
    }
  }
}"""
PAGE = """query Page($id: UUID!, $first: Int!, $after: String) {
  conversation(id: $id) {
    id
    messages(first: $first, after: $after) {
      edges { cursor node { id content createdAt clientMessageId sender { id name avatarUrl } } }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
  }
}"""
LIST = (
    "query ($id: UUID!) { conversation(id: $id) { messages(first: 20) "
    "{ edges { node { id content createdAt sender { id name avatarUrl } } } } } }"
)
# Documents the fast path must leave to the executor (they are answered all the same).
GENERIC = {
    "repeated key": "{ adminConversation { customer { id } customer { name } } }",
    "over the alias limit": "{ adminConversation { "
    + " ".join(f"a{i}: id" for i in range(20))
    + " } }",
    "resolver field not allowed": "{ integrity { orphanedConversationCount } }",
    "fragment": "{ adminConversation { ...C } } fragment C on Conversation { id }",
    "directive": "query ($s: Boolean!) { adminConversation { id @include(if: $s) } }",
    "two root fields": "{ a: adminConversation { id } b: adminConversation { id } }",
    "other root": "{ integrity { orphanedConversationCount } }",
    "invalid": "{ adminConversation { nope } }",
    "resolver field in a mutation": "mutation { adminConversation { conversation "
    "{ messages(first: 1) { edges { node { id } } } } } }",
}


def test_hot_documents_are_answered_by_the_fast_path_exactly_as_by_the_executor(
    pair: Pair,
) -> None:
    admin = make_admin("Ada Admin")
    customer = make_user(full_name="Cleo Customer")
    conversation = str(first_contact(customer).conversation.id)
    for i in range(5):
        send_message(
            ConversationId(UUID(conversation)),
            f"m{i}",
            sender_id=ProfileId(customer),
            client_message_id=f"c{i}" if i % 2 else None,
        )
    last_page = pair.generic.post(
        "/graphql",
        json={"query": PAGE, "variables": {"id": conversation, "first": 2}},
        headers={"authorization": f"Bearer {service_token()}"},
    ).json()["data"]["conversation"]["messages"]["pageInfo"]["endCursor"]
    cases: list[tuple[str, str | None, dict[str, Any] | None]] = [
        (f'{{ adminConversation(customerId: "{customer}") {{ id }} }}', service_token(), None),
        (LIST, user_token(customer), {"id": conversation}),
        (LIST, user_token(admin), {"id": conversation}),
        (PAGE, user_token(customer), {"id": conversation, "first": 2}),
        (PAGE, service_token(), {"id": conversation, "first": 3, "after": last_page}),
        (PAGE, service_token(), {"id": str(uuid4()), "first": 3}),  # no such conversation: null
        (OWN, user_token(customer), None),
        (OWN_READ, user_token(customer), None),
        (BY_VARIABLE, user_token(customer), {"c": str(customer)}),
        (BY_VARIABLE, service_token(), {"c": str(customer)}),
        (BY_VARIABLE, user_token(admin), {"c": str(customer)}),
        (READ_BY_VARIABLE, user_token(customer), {"c": str(customer)}),
        (READ_BY_VARIABLE, user_token(customer), {}),  # nullable: defaults to the caller
        (READ_BY_VARIABLE, service_token(), {"c": str(uuid4())}),  # nobody: null
        (EVERYTHING, user_token(customer), {"c": str(customer)}),
        (EVERYTHING, service_token(), {"c": str(customer)}),
    ]
    before = answered(pair.fast)
    for query, token, variables in cases:
        body = same(*pair.both(query, token, variables))
        assert "errors" not in body, (query, body)
    assert answered(pair.fast) - before == len(cases)  # none fell back


@pytest.mark.parametrize(
    ("case", "expected_code"),
    [
        ("anonymous", "UNAUTHENTICATED"),
        ("bad token", "UNAUTHENTICATED"),
        ("expired token", "UNAUTHENTICATED"),
        ("someone else's", "FORBIDDEN"),
        ("admin without customerId", "BAD_USER_INPUT"),
        ("service without customerId", "BAD_USER_INPUT"),
        ("not a UUID", "BAD_USER_INPUT"),
        ("missing required variable", "BAD_USER_INPUT"),
        ("no users row", "CUSTOMER_NOT_FOUND"),
        ("someone else's page", "FORBIDDEN"),
        ("page too large", "BAD_USER_INPUT"),
        ("bad cursor", "BAD_USER_INPUT"),
    ],
)
def test_failures_read_the_same_on_both_paths(pair: Pair, case: str, expected_code: str) -> None:
    admin = make_admin()
    customer, other = make_user(), make_user()
    conversation = str(first_contact(customer).conversation.id)
    query, token, variables = {
        "anonymous": (OWN, None, None),
        "bad token": (OWN, "not-a-token", None),
        "expired token": (OWN, user_token(customer, expires_in=-120), None),
        "someone else's": (BY_VARIABLE, user_token(customer), {"c": str(other)}),
        "admin without customerId": (OWN, user_token(admin), None),
        "service without customerId": (OWN, service_token(), None),
        "not a UUID": (BY_VARIABLE, user_token(customer), {"c": "nope"}),
        "missing required variable": (BY_VARIABLE, service_token(), {}),
        "no users row": (BY_VARIABLE, service_token(), {"c": str(uuid4())}),
        "someone else's page": (PAGE, user_token(other), {"id": conversation, "first": 2}),
        "page too large": (PAGE, user_token(customer), {"id": conversation, "first": 500}),
        "bad cursor": (PAGE, user_token(customer), {"id": conversation, "first": 2, "after": "x"}),
    }[case]

    body = same(*pair.both(query, token, variables))

    assert [e["extensions"]["code"] for e in body["errors"]] == [expected_code]


@pytest.mark.parametrize("name", sorted(GENERIC))
def test_documents_the_fast_path_cannot_plan_go_to_the_executor(pair: Pair, name: str) -> None:
    customer = make_user()
    make_admin()
    first_contact(customer)
    query = GENERIC[name].replace("%s", str(customer))
    variables = {"s": True} if "$s" in query else None
    before = answered(pair.fast)

    same(
        *pair.both(
            query, service_token() if "integrity" in query else user_token(customer), variables
        )
    )

    assert answered(pair.fast) == before


def test_a_first_call_on_the_fast_path_creates_what_the_executor_would(pair: Pair) -> None:
    make_admin("Ada Admin")
    twins = [make_legacy_user(full_name="Twin") for _ in range(2)]  # users rows, no profile
    before = answered(pair.fast)
    fast, generic = (
        client.post(
            "/graphql",
            json={"query": EVERYTHING, "variables": {"c": str(twin)}},
            headers={"authorization": f"Bearer {service_token()}"},
        ).json()
        for client, twin in zip((pair.fast, pair.generic), twins, strict=True)
    )

    def shape(body: dict[str, Any], customer: UUID) -> Any:
        text = json.dumps(body).replace(str(customer), "<customer>")
        text = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<id>", text)
        return json.loads(re.sub(r"\d{4}-\d\d-\d\dT[\d:.+]+", "<time>", text))

    assert answered(pair.fast) == before + 1  # the fast path created it
    assert fast["data"]["chat"]["created"] is True
    assert fast["data"]["chat"]["profileCreated"] is True
    assert shape(fast, twins[0]) == shape(generic, twins[1])


def test_an_operation_name_must_match_for_the_fast_path(pair: Pair) -> None:
    customer = make_user()
    make_admin()
    first_contact(customer)
    token, variables = user_token(customer), {"c": str(customer)}
    before = answered(pair.fast)

    same(*pair.both(EVERYTHING, token, variables, operationName="Open"))
    same(*pair.both(EVERYTHING, token, variables, operationName="Other"))

    assert answered(pair.fast) == before + 1  # "Other" names no operation: the executor says so


def test_a_long_operation_name_is_never_planned_or_remembered(pair: Pair) -> None:
    customer = make_user()
    make_admin()
    first_contact(customer)
    name = "Open" + "x" * 10_000
    query = EVERYTHING.replace("Open", name)

    same(*pair.both(query, user_token(customer), {"c": str(customer)}, operationName=name))

    plans = pair.fast.app.state.fast_paths.plans  # type: ignore[attr-defined]
    assert all(len(key[1] or "") <= 64 for key in plans)


def test_an_anonymous_caller_compiles_nothing(pair: Pair) -> None:
    plans = pair.fast.app.state.fast_paths.plans  # type: ignore[attr-defined]
    before = len(plans)

    body = same(*pair.both("{ adminConversation { id __typename } }", None))

    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert len(plans) == before  # documents compile only for authenticated callers


def test_the_fast_path_keeps_the_request_id_and_the_media_type_the_client_asked_for(
    pair: Pair,
) -> None:
    customer = make_user()
    make_admin()
    first_contact(customer)
    headers = {
        "authorization": f"Bearer {user_token(customer)}",
        "x-request-id": "widget-42",
        "accept": "application/graphql-response+json",
    }
    before = answered(pair.fast)

    fast, generic = (
        client.post("/graphql", json={"query": OWN_READ}, headers=headers)
        for client in (pair.fast, pair.generic)
    )

    assert answered(pair.fast) == before + 1
    assert fast.headers["x-request-id"] == generic.headers["x-request-id"] == "widget-42"
    assert fast.headers["content-type"] == generic.headers["content-type"]
    assert fast.headers["content-type"] == "application/graphql-response+json"
    assert int(fast.headers["content-length"]) == len(fast.content)
    assert fast.json() == generic.json()


def test_a_body_too_large_for_the_fast_path_is_answered_by_the_executor(pair: Pair) -> None:
    customer = make_user()
    make_admin()
    first_contact(customer)
    padded = json.dumps({"query": OWN_READ + " " * 9000}).encode()  # over the fast path's 8 KB
    headers = {
        "authorization": f"Bearer {user_token(customer)}",
        "content-type": "application/json",
    }
    before = answered(pair.fast)

    fast = pair.fast.post("/graphql", content=padded, headers=headers)
    generic = pair.generic.post("/graphql", content=padded, headers=headers)

    assert answered(pair.fast) == before  # replayed to the executor, body intact
    assert same(fast, generic)["data"]["adminConversation"]["id"]


def test_a_malformed_body_reaches_the_executor_intact_and_is_refused_alike(pair: Pair) -> None:
    headers = {"content-type": "application/json"}

    fast = pair.fast.post("/graphql", content=b'{"query": ', headers=headers)
    generic = pair.generic.post("/graphql", content=b'{"query": ', headers=headers)

    assert fast.status_code == generic.status_code == 400
    assert same(fast, generic)["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


def test_a_cross_origin_hot_request_gets_its_cors_headers(db: Settings) -> None:
    settings = db.replaced(cors_origins=("https://widget.example",))
    customer = make_user()
    make_admin()
    first_contact(customer)
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/graphql",
            json={"query": OWN_READ},
            headers={
                "authorization": f"Bearer {user_token(customer)}",
                "origin": "https://widget.example",
            },
        )

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://widget.example"
    assert response.json()["data"]["adminConversation"]["id"]


def test_an_unavailable_database_reads_the_same_on_both_paths(db: Settings) -> None:
    settings = db.replaced(db_lock_timeout_ms=200, sqlite_busy_timeout_ms=200)
    make_admin()
    customer = make_user()  # no conversation: the first call needs the profile's lock
    generic = TestClient(create_app(settings, fast_path=False), raise_server_exceptions=False)
    with TestClient(create_app(settings), raise_server_exceptions=False) as fast:
        pair = Pair(fast, generic)
        before = answered(fast)
        with holding_the_profile_lock(settings, customer):
            fast_response, generic_response = pair.both(
                EVERYTHING, service_token(), {"c": str(customer)}
            )
            read_fast, read_generic = pair.both(
                BY_VARIABLE, user_token(customer), {"c": str(customer)}
            )

    assert answered(fast) == before + 2  # answered there, not run a second time
    for response in (fast_response, generic_response):
        assert (response.status_code, response.headers["retry-after"]) == (503, "1")
    body = same(fast_response, generic_response)
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["SERVICE_UNAVAILABLE"]
    assert same(read_fast, read_generic)["errors"][0]["path"] == ["adminConversation"]


def test_a_failing_first_contact_is_answered_by_the_fast_path_and_run_once(
    pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    customer = make_legacy_user()  # no admin exists: the first contact must fail
    caplog.set_level("INFO", logger="helpline.errors")
    before = answered(pair.fast)

    fast = pair.fast.post(
        "/graphql",
        json={"query": EVERYTHING, "variables": {"c": str(customer)}},
        headers={"authorization": f"Bearer {service_token()}"},
    )

    assert answered(pair.fast) == before + 1  # not run again by the executor
    assert fast.json()["errors"][0]["extensions"]["code"] == "NO_ADMIN_AVAILABLE"
    assert fast.json()["errors"][0]["locations"] == [{"line": 2, "column": 3}]
    reported = [r for r in caplog.records if "NO_ADMIN_AVAILABLE" in r.getMessage()]
    assert len(reported) == 1  # one attempt, one report


def test_the_server_refuses_to_start_with_an_extension_the_fast_path_would_skip(
    db: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Audit(SchemaExtension):  # a later extension: say, an audit log of every operation
        def on_operation(self) -> Iterator[None]:
            yield

    built = schema_module.build_schema

    def with_audit(settings: GraphQLSettings, *, production: bool) -> Any:
        schema = built(settings, production=production)
        schema.extensions = (*schema.extensions, Audit)
        return schema

    monkeypatch.setattr(app_module, "build_schema", with_audit)
    with pytest.raises(UncoveredExtension, match="Audit"):
        create_app(db)
    assert create_app(db, fast_path=False) is not None  # the executor runs every extension


@pytest.mark.parametrize("origin", ["https://app.example", "https://evil.example", None])
def test_browsers_are_answered_on_the_fast_path_with_the_cors_middleware_s_headers(
    cors_pair: Pair, origin: str | None
) -> None:
    make_admin()
    customer = make_user()
    first_contact(customer)
    headers = {"authorization": f"Bearer {user_token(customer)}"}
    if origin is not None:
        headers["origin"] = origin
    before = answered(cors_pair.fast)

    fast, generic = (
        client.post("/graphql", json={"query": READ_BY_VARIABLE}, headers=headers)
        for client in (cors_pair.fast, cors_pair.generic)
    )

    assert answered(cors_pair.fast) == before + 1  # a browser's request took the fast path
    same(fast, generic)
    drop = {"x-request-id", "date"}
    assert {k: v for k, v in fast.headers.items() if k not in drop} == {
        k: v for k, v in generic.headers.items() if k not in drop
    }
    allowed = fast.headers.get("access-control-allow-origin")
    assert allowed == (origin if origin == "https://app.example" else None)
    assert "Origin" in fast.headers["vary"]


def test_a_preflight_is_answered_by_the_cors_middleware(cors_pair: Pair) -> None:
    preflight = {
        "origin": "https://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type",
    }
    fast, generic = (
        c.options("/graphql", headers=preflight) for c in (cors_pair.fast, cors_pair.generic)
    )
    assert fast.status_code == generic.status_code == 200
    assert fast.headers == generic.headers
