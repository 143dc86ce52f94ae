"""Documents and caches cannot exhaust a process (issue #23, rows 2 and 3).

A document whose validation would cost seconds of CPU (graphql-core compares every pair of
same-named fields) is refused by the pre-pass before graphql-core validates it, on every path
that validates: the executor's (HTTP), the fast path's compiler and the WebSocket subscribe
gate. The bounds are on CPU seconds the serving process spent, with a wide margin: each such
document costs 0.5 to 1.5 s to validate without the pre-pass, a few milliseconds with it.

Caches hold what their byte budgets allow, whatever documents arrive, and still serve the hot
ones.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx2 as httpx
import pytest
from starlette.testclient import TestClient

from gql.graphql.caches import ParsedDocuments, ValidatedDocuments
from gql.http.app import create_app
from gql.http.settings import Settings
from repo.migrate import migrate
from tests.conftest import settings_for
from tests.e2e.conftest import GraphQLClient, Server, running_server, service_token
from tests.e2e.wsclient import Subscription

ROUNDS = 20
CPU_BOUND_S = 2.0  # for ROUNDS refusals: without the pre-pass, one alone costs 0.5 to 1.5 s


def repeated(selection: str, count: int, head: str = "query") -> str:
    return f"{head} {{ " + " ".join([selection] * count) + " }"


def spread_together(count: int) -> str:
    spreads = " ".join(f"...F{i}" for i in range(count))
    fragments = " ".join(
        f"fragment F{i} on Query {{ integrity {{ orphanedConversationCount }} }}"
        for i in range(count)
    )
    return f"{{ {spreads} }} {fragments}"


# The issue's document first, then the worst the bench found (bench/documents.py), each
# refused by the validation cost (MAX_VALIDATION_COST).
REPEATED_SELECTIONS = repeated("integrity { orphanedConversationCount }", 390)
WORST = [
    REPEATED_SELECTIONS,
    repeated(
        "conversation(id: $id) { messages(first: 1) { edges { node { sender { name } } } } }",
        150,
        "query ($id: UUID!)",
    ),
    " ".join(
        [
            "{",
            *(f'conversation(id: "00000000-0000-4000-8000-{i:012d}") {{ id }}' for i in range(500)),
            "}",
        ]
    ),
    spread_together(400),
    " ".join(f"query Q{i} {{ __typename }}" for i in range(1000)),
]
SUBSCRIPTION = (
    "subscription ($id: UUID!) { messageAdded(conversationId: $id) { "
    + " ".join(["sender { name }"] * 390)
    + " } }"
)


def cpu_seconds(pid: int) -> float:
    """User and system CPU the process has used so far (/proc/PID/stat, utime and stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def sqlite_database(directory: Path) -> Settings:
    settings = settings_for(f"sqlite:///{directory / 'helpline.db'}")
    migrate(settings.database)
    return settings


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real server (`helpline serve`, one process) on a SQLite database of its own, with
    the token limit raised so the cost bound alone stands between a document and validation."""
    directory = tmp_path_factory.mktemp("served")
    database = sqlite_database(directory)
    with running_server(database, directory / "server.log", MAX_TOKENS="5000") as running:
        yield running


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for apps in this process, on a SQLite database of their own (what is tested
    here reads no table, so one backend is enough)."""
    return sqlite_database(tmp_path_factory.mktemp("in_process"))


def assert_refused_by_a_limit(error: dict[str, Any]) -> None:
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED", error
    assert "Allowed:" in error["message"], error


def distinct(query: str, count: int = ROUNDS) -> list[str]:
    """``count`` copies of a document, each a text of its own (no cache answers a copy)."""
    return [query.replace("query", f"query Q{number}", 1) for number in range(count)]


def test_costly_documents_are_refused_over_http_for_little_cpu(server: Server) -> None:
    documents = distinct(REPEATED_SELECTIONS) + WORST[1:]
    with httpx.Client(timeout=60) as http:  # anonymous, as the attackers were
        before = cpu_seconds(server.pid)
        answers = [http.post(server.url, json={"query": query}) for query in documents]
        spent = cpu_seconds(server.pid) - before

    assert spent < CPU_BOUND_S, f"{len(documents)} documents cost {spent:.2f} s of CPU"
    for answer in answers:
        assert answer.status_code == 200, answer.text[:200]
        (error,) = answer.json()["errors"]
        assert_refused_by_a_limit(error)


def test_costly_subscriptions_are_refused_at_the_gate_for_little_cpu(server: Server) -> None:
    async def scenario() -> list[dict[str, Any]]:
        sub = await Subscription.open(server.url, service_token())
        replies = []
        for number in range(ROUNDS):
            await sub.subscribe(str(uuid4()), f"costly-{number}", query=SUBSCRIPTION)
            replies.append(await sub.receive())
        await sub.close()
        return replies

    before = cpu_seconds(server.pid)
    replies = asyncio.run(scenario())
    spent = cpu_seconds(server.pid) - before

    assert spent < CPU_BOUND_S, f"{ROUNDS} subscribes cost {spent:.2f} s of CPU"
    for reply in replies:
        assert reply["type"] == "error", reply
        (error,) = reply["payload"]
        assert_refused_by_a_limit(error)


def test_the_fast_path_compiler_refuses_costly_documents_for_little_cpu(
    in_process: Settings,
) -> None:
    fast_paths = create_app(in_process).state.fast_paths
    # Plans parse at most MAX_PLAN_TOKENS, which keeps these documents from the compiler; lift
    # it, so the pre-pass alone stands between the compiler and graphql-core's validation.
    fast_paths.max_tokens = in_process.graphql.max_tokens
    documents = distinct(REPEATED_SELECTIONS)

    started = time.process_time()
    plans = [fast_paths.plan_for(query, None) for query in documents]
    spent = time.process_time() - started

    assert spent < CPU_BOUND_S, f"{ROUNDS} compilations cost {spent:.2f} s of CPU"
    assert plans == [None] * ROUNDS


def distinct_names(index: int, size: int = 8192) -> str:
    """An 8 KB document of one name repeated (over 2 MB once parsed), distinct per index."""
    head = f"query Q{index} {{ "
    return head + "a " * ((size - len(head) - 2) // 2) + "}"


FLOOD = 100  # 8 KB documents: were the parse cache bounded by count, over 200 MB kept
RSS_GROWTH_BOUND = 100 * 1024 * 1024
HOT = "query Hot { __typename }"


def test_distinct_heavy_documents_leave_the_memory_bounded(server: Server) -> None:
    with httpx.Client(timeout=60) as http:
        http.post(server.url, json={"query": HOT})
        before = rss_bytes(server.pid)
        for index in range(FLOOD):
            refused = http.post(server.url, json={"query": distinct_names(index)})
            assert refused.json()["errors"][0]["extensions"]["code"] == (
                "GRAPHQL_VALIDATION_FAILED"
            )
            if index % 10 == 0:
                assert http.post(server.url, json={"query": HOT}).json() == {
                    "data": {"__typename": "Query"}
                }
        grown = rss_bytes(server.pid) - before

    assert grown < RSS_GROWTH_BOUND, f"RSS grew {grown / 2**20:.0f} MiB"


SMALL_CACHES = {
    "parse_cache_bytes": 512 * 1024,
    "validation_cache_bytes": 32 * 1024,
    "plan_cache_bytes": 32 * 1024,
}


def test_the_caches_keep_serving_hot_documents_through_a_flood(in_process: Settings) -> None:
    with TestClient(create_app(in_process.replaced(**SMALL_CACHES))) as http:
        client = GraphQLClient(http, service_token())
        extensions = http.app.state.view.schema.get_extensions()  # type: ignore[attr-defined]
        caches = [
            next(e.cache for e in extensions if isinstance(e, ParsedDocuments)),
            next(e.cache for e in extensions if isinstance(e, ValidatedDocuments)),
            http.app.state.fast_paths.plans,  # type: ignore[attr-defined]
        ]
        hot = "query Hot { __typename }"
        client.data(hot)
        hits = [cache.hits for cache in caches]

        for index in range(300):  # light documents, each kept, and a few heavy ones
            client.post(f"query Light{index} {{ __typename }}")
            if index % 30 == 0:
                client.post(distinct_names(index))
            client.data(hot)

    served = [cache.hits - before for cache, before in zip(caches, hits, strict=True)]
    assert min(served) >= 300, served  # every hot request: parsed, validated, planned already
    for cache in caches:
        assert 0 < cache.bytes <= cache.max_bytes
        assert len(cache) < 300  # the light documents went through, least recently used out
