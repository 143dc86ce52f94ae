"""Metrics, JSON logs and readiness of the served app."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx2 as httpx
import pytest
from starlette.testclient import TestClient

from gql.http.app import create_app
from gql.http.settings import Settings
from gql.observability.logs import RequestIdFilter
from repo.demo import CUSTOMER, LEGACY_CUSTOMER
from tests.e2e.conftest import Server, running_server, service_token, user_token, wait_for
from tests.e2e.wsclient import Subscription
from tests.factories import make_admin, make_orphaned_conversation, make_user
from tests.faults import holding_the_profile_lock
from tests.proxy import TcpProxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
OPEN = "mutation OpenChat { adminConversation { created profileCreated } }"
FIRST_CONTACT = "mutation adminConversation"  # OPEN's metric label: its type and root field


def post(url: str, query: str, token: str) -> dict[str, Any]:
    response = httpx.post(
        url, json={"query": query}, timeout=30, headers={"authorization": f"Bearer {token}"}
    )
    body: dict[str, Any] = response.json()
    return body


def metric(text: str, name: str, *, missing: float | None = None, **labels: str) -> float:
    """A sample's value; a series that is absent is an error unless ``missing`` is given."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)$"
    match = re.search("^" + pattern, text, re.M)
    if match is None:
        assert missing is not None, f"{name}{labels} is not exported"
        return missing
    return float(match.group(1))


def sockets_by_pid(server: Server) -> dict[str, float]:
    text = httpx.get(f"{server.base}/metrics", timeout=10).text
    samples = re.findall(r'^helpline_websocket_connections\{pid="(\d+)"\} (\S+)$', text, re.M)
    return {pid: float(value) for pid, value in samples}


def test_metrics_move_with_traffic_and_logs_are_json_without_secrets(server: Server) -> None:
    legacy_token = user_token(LEGACY_CUSTOMER.id)
    before = httpx.get(f"{server.base}/metrics", timeout=10).text

    assert post(server.url, OPEN, user_token(CUSTOMER.id))["data"]["adminConversation"]["created"]
    healed = post(server.url, OPEN, legacy_token)["data"]["adminConversation"]
    assert healed == {"created": True, "profileCreated": True}
    assert "errors" in post(server.url, "query Nope { nope }", service_token())

    after = httpx.get(f"{server.base}/metrics", timeout=10).text
    grew = {
        (name, *labels.values()): metric(after, name, **labels)
        - metric(before, name, missing=0.0, **labels)
        for name, labels in [
            ("helpline_graphql_requests_total", {"operation": FIRST_CONTACT}),
            ("helpline_graphql_requests_total", {"operation": "invalid"}),
            ("helpline_conversations_created_total", {}),
            ("helpline_conversations_assigned_total", {"reason": "first_contact"}),
            ("helpline_profiles_self_healed_total", {}),
            ("helpline_graphql_errors_total", {"code": "GRAPHQL_VALIDATION_FAILED"}),
        ]
    }
    assert grew == {
        ("helpline_graphql_requests_total", FIRST_CONTACT): 2,
        ("helpline_graphql_requests_total", "invalid"): 1,
        ("helpline_conversations_created_total",): 2,
        ("helpline_conversations_assigned_total", "first_contact"): 2,
        ("helpline_profiles_self_healed_total",): 1,
        ("helpline_graphql_errors_total", "GRAPHQL_VALIDATION_FAILED"): 1,
    }
    assert metric(after, "helpline_orphaned_conversations") == 0
    assert metric(after, "helpline_db_pool_connections_in_use") >= 0
    assert (
        f'helpline_graphql_request_duration_seconds_bucket{{le="0.5",operation="{FIRST_CONTACT}"}}'
        in after
    )

    def access_lines() -> list[dict[str, Any]]:
        lines = [
            json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")
        ]
        return [line for line in lines if line.get("logger") == "helpline.access"]

    requests = wait_for(
        lambda: (
            (found := access_lines())
            and {r["operation_name"] for r in found} >= {"OpenChat", "Nope"}
            and found
        ),
        "both requests' access-log lines",
    )
    assert {(r["operation"], r["operation_name"]) for r in requests} >= {
        (FIRST_CONTACT, "OpenChat"),
        ("invalid", "Nope"),
    }
    assert all(r["request_id"] and "duration_ms" in r for r in requests)
    assert any(r["error_codes"] == ["GRAPHQL_VALIDATION_FAILED"] for r in requests)
    assert legacy_token not in server.log.read_text()


def test_callers_cannot_choose_metric_labels(server: Server) -> None:
    token = user_token(CUSTOMER.id)
    for n in range(55):
        query = f"query Junk{n:02} {{ adminConversation {{ id }} __typename }}"
        assert "data" in post(server.url, query, token)
    assert post(server.url, OPEN, token)["data"]["adminConversation"]["created"] in (True, False)
    named = {
        "query Q1 { ...F } fragment F on Query { integrity { orphanedConversationCount } }",
        "{ ... on Query { adminConversation(customerId: null) { id } } }",
    }
    for query in named:
        post(server.url, query, service_token())

    text = httpx.get(f"{server.base}/metrics", timeout=10).text
    labels = set(re.findall(r'^helpline_graphql_requests_total\{operation="([^"]*)"\}', text, re.M))
    assert labels == {
        "query __typename,adminConversation",
        FIRST_CONTACT,
        "query integrity",
        "query adminConversation",
    }
    assert metric(text, "helpline_graphql_requests_total", operation=FIRST_CONTACT) >= 1

    def junk() -> list[dict[str, Any]]:
        text = server.log.read_text()
        return [json.loads(line) for line in text.splitlines() if "Junk" in line]

    logged = wait_for(lambda: len(found := junk()) >= 55 and found, "55 access-log lines")
    assert {line["operation_name"] for line in logged} == {f"Junk{n:02}" for n in range(55)}


def test_logs_never_hold_tokens_variables_or_message_contents(server: Server) -> None:
    token = user_token(CUSTOMER.id)
    conversation = post(
        server.url, "mutation { adminConversation { conversation { id } } }", token
    )["data"]["adminConversation"]["conversation"]["id"]
    secret = "MY CARD 4111-1111-1111-1111"
    send = (
        "mutation ($id: UUID!, $text: String!) "
        "{ sendMessage(conversationId: $id, content: $text) { id } }"
    )
    for variables in (
        {"id": conversation, "text": secret},
        {"id": secret, "text": "x"},
        {"id": conversation, "text": {"nested": secret}},
    ):
        httpx.post(
            server.url,
            json={"query": send, "variables": variables},
            timeout=30,
            headers={"authorization": f"Bearer {token}"},
        )
    log = wait_for(
        lambda: (text := server.log.read_text()).count('"logger": "helpline.access"') >= 4 and text,
        "four access-log lines",
    )
    # no part of the secret that a request id (32 random hex digits) could also spell
    assert "4111-1111" not in log and "MY CARD" not in log and token not in log


def test_the_orphan_gauge_counts_orphans_once_a_minute_at_most(
    db: Settings, tmp_path: Path
) -> None:
    orphan_admin = make_admin()
    make_orphaned_conversation(make_user(), orphan_admin)
    with running_server(db, tmp_path / "server.log") as server:
        first = httpx.get(f"{server.base}/metrics", timeout=10).text
        make_orphaned_conversation(make_user(), orphan_admin)
        cached = httpx.get(f"{server.base}/metrics", timeout=10).text
    assert metric(first, "helpline_orphaned_conversations") == 1
    assert metric(cached, "helpline_orphaned_conversations") == 1  # not rescanned per scrape


def test_the_socket_gauge_counts_open_websockets(server: Server) -> None:
    def sockets() -> float:
        text = httpx.get(f"{server.base}/metrics", timeout=10).text
        return metric(text, "helpline_websocket_connections")

    async def scenario() -> tuple[float, float, float]:
        before = await asyncio.to_thread(sockets)
        subscription = await Subscription.open(server.url, service_token())
        held = await asyncio.to_thread(sockets)
        await subscription.close()
        deadline = time.monotonic() + 10
        while (after := await asyncio.to_thread(sockets)) != before:
            assert time.monotonic() < deadline, "the closed socket is still counted"
            await asyncio.sleep(0.1)
        return before, held, after

    assert asyncio.run(scenario()) == (0, 1, 0)


@contextmanager
def app_behind_proxy(postgres_url: str) -> Iterator[tuple[TestClient, TcpProxy]]:
    """The app on PostgreSQL reached through a loopback proxy the test controls."""
    target = urlsplit(postgres_url)
    with TcpProxy(target.port or 5432) as proxy:
        netloc = f"{target.username}@127.0.0.1:{proxy.port}"
        proxied = Settings.of(database_url=urlunsplit(target._replace(netloc=netloc)))
        with TestClient(create_app(proxied)) as http:
            yield http, proxy


def test_ready_follows_the_database_through_an_outage(postgres_url: str) -> None:
    """A network fault needs a database server: PostgreSQL, reached through a proxy we cut."""
    with app_behind_proxy(postgres_url) as (http, proxy):
        assert http.get("/ready").status_code == 200
        proxy.cut()
        assert http.get("/ready").status_code == 503
        assert http.get("/live").status_code == 200
        proxy.restore()
        deadline = time.monotonic() + 10
        while http.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, "not ready again after the database returned"
            time.sleep(0.2)


def test_metrics_add_up_across_workers(db: Settings, tmp_path: Path) -> None:
    if db.database.is_sqlite:  # live messages fan out in process: SQLite refuses several workers
        refused = subprocess.run(
            [str(Path(sys.executable).parent / "helpline"), "serve", "--workers", "2"],
            env={**os.environ, "DATABASE_URL": db.database.database_url},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert refused.returncode == 2
        assert "SQLite serves one process" in refused.stderr
        return
    with running_server(db, tmp_path / "server.log", workers=2) as server:
        for _ in range(12):
            post(
                server.url,
                "query Counted { integrity { orphanedConversationCount } }",
                service_token(),
            )
        scrapes = {
            metric(
                httpx.get(f"{server.base}/metrics", timeout=10).text,
                "helpline_graphql_requests_total",
                operation="query integrity",
            )
            for _ in range(4)
        }
        deadline = time.monotonic() + 10
        while len(per_worker := sockets_by_pid(server)) < 2:
            assert time.monotonic() < deadline, per_worker
            time.sleep(0.2)
    assert scrapes == {12.0}  # every scrape, whichever worker answers it, sees all requests
    assert sorted(per_worker.values()) == [0.0, 0.0]  # a series per worker pid, no socket open


def test_ready_answers_503_in_time_when_the_database_goes_silent(postgres_url: str) -> None:
    with app_behind_proxy(postgres_url) as (http, proxy):
        assert http.get("/ready").status_code == 200
        proxy.stall()
        started = time.monotonic()
        assert http.get("/ready").status_code == 503
        assert time.monotonic() - started < 30  # a guard against hanging, not a speed test
        proxy.restore()


@pytest.mark.parametrize(("access_log", "logged"), [("all", 3), ("errors", 1)])
def test_access_log_errors_keeps_only_the_lines_of_failed_requests(
    db: Settings, caplog: pytest.LogCaptureFixture, access_log: str, logged: int
) -> None:
    customer = make_user()
    make_admin()
    token = {"authorization": f"Bearer {user_token(customer)}"}
    with TestClient(create_app(db.replaced(access_log=access_log))) as client:
        caplog.set_level("INFO", logger="helpline.access")
        fast = client.post(
            "/graphql", json={"query": "mutation { adminConversation { created } }"}, headers=token
        )
        generic = client.post(
            "/graphql",
            json={"query": "{ adminConversation { ...C } } fragment C on Conversation { id }"},
            headers=token,
        )
        failed = client.post("/graphql", json={"query": "{ nope }"}, headers=token)

    assert fast.json()["data"]["adminConversation"]["created"] is True
    assert "errors" not in generic.json() and "errors" in failed.json()
    lines = [r for r in caplog.records if r.name == "helpline.access"]
    assert len(lines) == logged
    assert lines[-1].error_codes == ["GRAPHQL_VALIDATION_FAILED"]  # type: ignore[attr-defined]


def test_lines_logged_while_serving_a_request_carry_its_id(
    db: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = db.replaced(db_lock_timeout_ms=200, sqlite_busy_timeout_ms=200)
    make_admin()
    customer = make_user()
    caplog.handler.addFilter(RequestIdFilter())  # as helpline serve's handler has it
    caplog.set_level("INFO")
    with TestClient(create_app(settings)) as http, holding_the_profile_lock(settings, customer):
        for fast_path_document in (True, False):
            query = "mutation { adminConversation { conversation { id } } }"
            if not fast_path_document:
                query = (  # a fragment: the executor's path
                    "mutation { adminConversation { ...P } } "
                    "fragment P on AdminConversationPayload { created }"
                )
            response = http.post(
                "/graphql",
                json={"query": query},
                headers={
                    "authorization": f"Bearer {user_token(customer)}",
                    "x-request-id": f"trace-{fast_path_document}",
                },
            )
            assert response.status_code == 503

    for request_id in ("trace-True", "trace-False"):
        causes = [
            r
            for r in caplog.records
            if r.name == "repo.units" and getattr(r, "request_id", None) == request_id
        ]
        assert causes and "database unavailable" in causes[0].getMessage()
