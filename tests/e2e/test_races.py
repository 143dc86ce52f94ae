"""Races over HTTP: many callers at once against real `helpline serve` processes.

On PostgreSQL two processes serve one database and every request is sent at once from one
event loop, alternating between them; on SQLite one process serves 16 clients at once. The
database is read afterwards: one conversation, one welcome message and one profile per
customer, every acknowledged message stored once, and nothing for the post-mortem to find.
The servers' logs are read too: the fast path runs a failed operation again through the
executor, so a lost race may show only there.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx2 as httpx
import pytest

from gql.http.settings import Settings
from repo.database import database
from repo.demo import ADMIN
from repo.models import Conversation, Message, Profile
from tests.e2e.conftest import ROOT, Server, running_server, user_token
from tests.factories import make_legacy_user, make_user
from tests.invariants import assert_guarantees_hold

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
on_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
on_sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

OPEN = """mutation ($customer: UUID) { adminConversation(customerId: $customer) {
  created profileCreated conversation { id } } }"""
# The same operation with a fragment, which the fast path leaves to the executor: a failure
# there is answered as an error, where the fast path runs the operation again instead.
OPEN_WITH_FRAGMENT = """mutation ($customer: UUID) {
  adminConversation(customerId: $customer) { ...Opened } }
fragment Opened on AdminConversationPayload { created profileCreated conversation { id } }"""
SEND = """mutation ($id: UUID!, $text: String!) {
  sendMessage(conversationId: $id, content: $text) { id createdAt } }"""
WELCOME = "Hello from e2e"  # running_server's WELCOME_MESSAGE
# Both processes together stay well inside the test server's max_connections (100), which
# other runs share; requests beyond a pool's size wait for a connection (DB_POOL_TIMEOUT).
POOL_SIZE = "20"
REQUEST_TIMEOUT_S = 30
LOUD = re.compile(r'"level": "(WARNING|ERROR|CRITICAL)"')


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


def assert_no_warnings_logged(servers: Sequence[Server]) -> None:
    """No process logged a warning or an error: no constraint violation, no unavailable
    database, no deadlock retried out of sight, and no failure that the fast path hid by
    running the operation again through the executor."""
    for server in servers:
        lines = server.log.read_text().splitlines()
        noisy = [line for line in lines if not line.startswith('{"time"') or LOUD.search(line)]
        assert noisy == [], f"{server.log.name}: {noisy[:5]}"


def assert_nothing_for_the_post_mortem() -> None:
    """The post-mortem's own orphan query finds nothing, and the product's guarantees hold."""
    orphan_query = (ROOT / "schema/ops/orphaned_conversations.sql").read_text()
    with database.connection_context():
        assert database.execute_sql(orphan_query).fetchall() == []
    assert_guarantees_hold()


def stored_conversations() -> list[tuple[str, str]]:
    """(customer id, conversation id) of every conversation in the database."""
    with database.connection_context():
        query: Any = Conversation.select(Conversation.customer, Conversation.id).tuples()
        return sorted((str(customer), str(conversation)) for customer, conversation in query)


# Six calls per customer: 50 customers at once put 150 calls in flight on each process,
# inside its MAX_CONCURRENT_REQUESTS (200; beyond it a process answers 503 at once).
CALLS_PER_CUSTOMER = 6


def first_calls_at_once(
    servers: Sequence[Server], customers: Sequence[UUID]
) -> dict[UUID, list[dict[str, Any]]]:
    """Every customer's first calls, all sent at once; what each customer's callers got."""
    admin = user_token(ADMIN.id)
    # A customer's calls go out back to back so that they meet inside the database: to both
    # processes, from the admin and from the customer's own widget, each through the fast
    # path and through the executor.
    calls = [
        (
            customer,
            Call(
                servers[n % 2].url,
                admin if n // 2 % 2 else user_token(customer, email=f"{customer}@example.com"),
                OPEN_WITH_FRAGMENT if (n + n // 2) % 2 else OPEN,
                {"customer": str(customer)},
            ),
        )
        for customer in customers
        for n in range(CALLS_PER_CUSTOMER)
    ]

    async def scenario() -> list[dict[str, Any]]:
        async with client(len(calls)) as http:
            return await gather_or_fail([post(http, call) for _, call in calls])

    seen: dict[UUID, list[dict[str, Any]]] = defaultdict(list)
    for (customer, _), answer in zip(calls, asyncio.run(scenario()), strict=True):
        seen[customer].append(answer["adminConversation"])
    return seen


@on_postgresql
def test_first_calls_through_two_processes_make_one_conversation_per_customer(
    servers: tuple[Server, Server],
) -> None:
    legacy = [make_legacy_user() for _ in range(50)]  # a users row, no profile: 300 calls
    signed_up = [make_user() for _ in range(30)]  # only the profile's row lock orders theirs

    seen = first_calls_at_once(servers, legacy) | first_calls_at_once(servers, signed_up)

    for customer, opened in seen.items():
        assert len({o["conversation"]["id"] for o in opened}) == 1, customer
        assert sum(o["created"] for o in opened) == 1, customer
        assert sum(o["profileCreated"] for o in opened) == (customer in legacy), customer
    conversation_of = {str(c): opened[0]["conversation"]["id"] for c, opened in seen.items()}
    assert stored_conversations() == sorted(conversation_of.items())
    with database.connection_context():
        welcomes: Any = (
            Message.select(Conversation.customer, Message.sender, Message.content)
            .join(Conversation)
            .tuples()
        )
        assert sorted((str(c), str(s), text) for c, s, text in welcomes) == sorted(
            (customer, str(ADMIN.id), WELCOME) for customer in conversation_of
        )
        profiles: Any = Profile.select(Profile.id).where(Profile.id.in_(list(seen))).tuples()
        assert sorted(str(p) for (p,) in profiles) == sorted(conversation_of)
    assert_nothing_for_the_post_mortem()
    assert_no_warnings_logged(servers)


def chat_at_once(servers: Sequence[Server], customers: Sequence[UUID], *, admin_every: int) -> None:
    """Each customer opens their conversation and sends 3 messages, while the admin opens
    and writes 2 to every ``admin_every``-th, all at once, each caller alternating processes.

    Then every acknowledged message is stored exactly once, and every conversation's
    last_message_at is its newest message's created_at.
    """
    admin = user_token(ADMIN.id)
    sent: dict[str, str] = {}  # acknowledged message id -> its content
    opened: dict[UUID, set[str]] = defaultdict(set)

    async def chat(http: httpx.AsyncClient, n: int, token: str, texts: list[str]) -> None:
        customer = customers[n]
        url = [server.url for server in servers]
        first = n + (token == admin)  # the admin starts on the other process
        call = Call(url[first % len(url)], token, OPEN, {"customer": str(customer)})
        conversation = (await post(http, call))["adminConversation"]["conversation"]["id"]
        opened[customer].add(conversation)
        for k, text in enumerate(texts, start=first + 1):
            call = Call(url[k % len(url)], token, SEND, {"id": conversation, "text": text})
            sent[(await post(http, call))["sendMessage"]["id"]] = text

    flows = [
        (n, user_token(customer), [f"{customer} says {k}" for k in range(3)])
        for n, customer in enumerate(customers)
    ] + [
        (n, admin, [f"admin to {customers[n]}: {k}" for k in range(2)])
        for n in range(0, len(customers), admin_every)
    ]

    async def scenario() -> None:
        async with client(len(flows)) as http:
            await gather_or_fail([chat(http, *flow) for flow in flows])

    asyncio.run(scenario())

    assert all(len(ids) == 1 for ids in opened.values())
    assert len(sent) == sum(len(texts) for _, _, texts in flows)
    assert sorted(customer for customer, _ in stored_conversations()) == sorted(
        str(customer) for customer in customers
    )
    with database.connection_context():
        columns = (Message.id, Message.conversation, Message.content, Message.created_at)
        stored: list[Any] = list(Message.select(*columns).tuples())
    replies = [(str(m), text) for m, _, text, _ in stored if text != WELCOME]
    assert Counter(message_id for message_id, _ in replies) == Counter(list(sent))
    assert dict(replies) == sent
    assert sum(text == WELCOME for _, _, text, _ in stored) == len(customers)
    newest: dict[str, Any] = {}
    for _, conversation, _, created_at in stored:
        newest[str(conversation)] = max(newest.get(str(conversation), created_at), created_at)
    with database.connection_context():
        last: Any = Conversation.select(Conversation.id, Conversation.last_message_at).tuples()
        assert {str(conversation): at for conversation, at in last} == newest


@on_postgresql
def test_many_customers_chatting_at_once_through_two_processes_lose_no_message(
    servers: tuple[Server, Server],
) -> None:
    customers = [make_legacy_user() if n % 2 else make_user() for n in range(60)]

    chat_at_once(servers, customers, admin_every=3)

    assert_nothing_for_the_post_mortem()
    assert_no_warnings_logged(servers)


@on_sqlite
def test_sixteen_clients_chatting_at_once_with_one_sqlite_process_get_no_error(
    server: Server,
) -> None:
    customers = [make_legacy_user() if n % 2 else make_user() for n in range(12)]

    chat_at_once([server], customers, admin_every=3)  # and 4 admin flows: 16 clients

    assert_nothing_for_the_post_mortem()
    assert_no_warnings_logged([server])
