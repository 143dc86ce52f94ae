"""Races over HTTP: many callers at once, spread over two `helpline serve` processes, one database.

Every request is sent at once from one event loop, alternating between the processes, and
the database is read afterwards: one conversation, one welcome message and one profile per
customer, every acknowledged message stored once, and nothing for the post-mortem to find.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx2 as httpx
import pytest

from repo.checks import VIOLATION, run_checks
from repo.config import Settings
from repo.db import database
from repo.demo import ADMIN
from tests.e2e.conftest import ROOT, Server, running_server, user_token
from tests.factories import make_legacy_user, make_user

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(120),
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]
OPEN = """mutation ($customer: UUID) { adminConversation(customerId: $customer) {
  created profileCreated conversation { id } } }"""
SEND = """mutation ($id: UUID!, $text: String!) {
  sendMessage(conversationId: $id, content: $text) { id createdAt } }"""
WELCOME = "Hello from e2e"  # running_server's WELCOME_MESSAGE
# Both processes together stay well inside the test server's max_connections (100), which
# other runs share; requests beyond a pool's size wait for a connection (DB_POOL_TIMEOUT).
POOL_SIZE = "20"
REQUEST_TIMEOUT_S = 30


@pytest.fixture
def servers(db: Settings, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """Two `helpline serve` processes on the same PostgreSQL database."""
    with (
        running_server(db, tmp_path / "a.log", DB_POOL_SIZE=POOL_SIZE) as a,
        running_server(db, tmp_path / "b.log", DB_POOL_SIZE=POOL_SIZE) as b,
    ):
        yield a, b


@dataclass(frozen=True)
class Call:
    url: str
    token: str
    query: str
    variables: dict[str, Any]


async def post(http: httpx.AsyncClient, call: Call) -> dict[str, Any]:
    """The operation's data; a response that is not a 200 without errors fails the caller."""
    response = await http.post(
        call.url,
        json={"query": call.query, "variables": call.variables},
        headers={"authorization": f"Bearer {call.token}"},
    )
    assert response.status_code == 200, f"HTTP {response.status_code}: {response.text}"
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body["errors"]
    data: dict[str, Any] = body["data"]
    return data


def client(concurrency: int) -> httpx.AsyncClient:
    """One connection per request in flight, so every call really is sent at once."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(limits=limits, timeout=REQUEST_TIMEOUT_S)


async def gather_or_fail(jobs: Sequence[Any]) -> list[Any]:
    """Run the coroutines together; fail with every caller's error, not only the first."""
    results = await asyncio.gather(*jobs, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, f"{len(failures)} of {len(results)} callers failed: {failures[:5]}"
    return results


def rows(sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with database.connection_context():
        return list(database.execute_sql(sql, params).fetchall())


def assert_nothing_for_the_post_mortem() -> None:
    """The post-mortem's own orphan query finds nothing, and no integrity check is violated."""
    orphan_query = (ROOT / "schema/ops/orphaned_conversations.sql").read_text()
    assert rows(orphan_query) == []
    violated = [check for check in run_checks() if check.status == VIOLATION]
    assert violated == []


CUSTOMERS = 50
CALLS_PER_CUSTOMER = 4  # 200 first calls in all


def test_first_calls_through_two_processes_make_one_conversation_per_customer(
    servers: tuple[Server, Server],
) -> None:
    customers = [make_legacy_user() for _ in range(CUSTOMERS)]
    admin = user_token(ADMIN.id)
    # A customer's calls go out back to back, to both processes, half of them the admin's and
    # half the customer's own (as the widget sends them), so they meet inside the database.
    calls = [
        (
            customer,
            Call(
                servers[n % 2].url,
                admin if n // 2 % 2 else user_token(customer, email=f"{customer}@example.com"),
                OPEN,
                {"customer": str(customer)},
            ),
        )
        for customer in customers
        for n in range(CALLS_PER_CUSTOMER)
    ]

    async def scenario() -> list[dict[str, Any]]:
        async with client(len(calls)) as http:
            return await gather_or_fail([post(http, call) for _, call in calls])

    answers = asyncio.run(scenario())

    seen: dict[UUID, list[dict[str, Any]]] = defaultdict(list)
    for (customer, _), answer in zip(calls, answers, strict=True):
        seen[customer].append(answer["adminConversation"])
    for customer, opened in seen.items():
        assert len({o["conversation"]["id"] for o in opened}) == 1, customer
        assert sum(o["created"] for o in opened) == 1, customer
        assert sum(o["profileCreated"] for o in opened) == 1, customer
    conversation_of = {str(c): opened[0]["conversation"]["id"] for c, opened in seen.items()}

    per_customer = rows(
        "SELECT customer_id::text, id::text FROM conversations WHERE customer_id = ANY(%s::uuid[])",
        list(conversation_of),
    )
    assert sorted(per_customer) == sorted(conversation_of.items())
    welcomes = rows(
        "SELECT c.customer_id::text, m.sender_id::text, m.content FROM messages m"
        " JOIN conversations c ON c.id = m.conversation_id"
    )
    assert sorted(welcomes) == sorted((c, str(ADMIN.id), WELCOME) for c in conversation_of)
    profiles = rows(
        "SELECT id::text, COUNT(*) FROM profiles WHERE id = ANY(%s::uuid[]) GROUP BY id",
        list(conversation_of),
    )
    assert sorted(profiles) == sorted((c, 1) for c in conversation_of)
    assert_nothing_for_the_post_mortem()


CHATTING_CUSTOMERS = 60
MESSAGES_EACH = 3
ADMIN_WRITES_TO_EVERY = 3  # the admin opens and writes to every third customer's conversation
ADMIN_MESSAGES_EACH = 2


def test_many_customers_chatting_at_once_through_two_processes_lose_no_message(
    servers: tuple[Server, Server],
) -> None:
    customers = [make_legacy_user() if i % 2 else make_user() for i in range(CHATTING_CUSTOMERS)]
    admin = user_token(ADMIN.id)
    sent: dict[str, str] = {}  # acknowledged message id -> its content
    opened: dict[UUID, set[str]] = defaultdict(set)

    async def chat(http: httpx.AsyncClient, customer: UUID, token: str, texts: list[str]) -> None:
        """Open the customer's conversation, then send each text, alternating processes."""
        url = [s.url for s in servers]
        start = random.Random(str(customer) + token).randrange(2)
        answer = await post(http, Call(url[start], token, OPEN, {"customer": str(customer)}))
        conversation = answer["adminConversation"]["conversation"]["id"]
        opened[customer].add(conversation)
        for n, text in enumerate(texts, start=start + 1):
            message = await post(
                http, Call(url[n % 2], token, SEND, {"id": conversation, "text": text})
            )
            sent[message["sendMessage"]["id"]] = text

    flows = [
        (customer, user_token(customer), [f"{customer} says {n}" for n in range(MESSAGES_EACH)])
        for customer in customers
    ] + [
        (customer, admin, [f"admin to {customer}: {n}" for n in range(ADMIN_MESSAGES_EACH)])
        for customer in customers[::ADMIN_WRITES_TO_EVERY]
    ]

    async def scenario() -> None:
        async with client(len(flows)) as http:
            await gather_or_fail([chat(http, *flow) for flow in flows])

    asyncio.run(scenario())

    assert all(len(ids) == 1 for ids in opened.values())
    assert len(sent) == sum(len(texts) for _, _, texts in flows)
    stored = rows("SELECT id::text, content FROM messages WHERE content <> %s", WELCOME)
    assert Counter(message_id for message_id, _ in stored) == Counter(list(sent))
    assert dict(stored) == sent
    assert rows("SELECT COUNT(*), COUNT(DISTINCT customer_id) FROM conversations") == [
        (CHATTING_CUSTOMERS, CHATTING_CUSTOMERS)
    ]
    assert rows("SELECT COUNT(*) FROM messages WHERE content = %s", WELCOME) == [
        (CHATTING_CUSTOMERS,)
    ]
    stale = rows(
        "SELECT c.id FROM conversations c WHERE c.last_message_at IS DISTINCT FROM"
        " (SELECT MAX(m.created_at) FROM messages m WHERE m.conversation_id = c.id)"
    )
    assert stale == []
    assert_nothing_for_the_post_mortem()
