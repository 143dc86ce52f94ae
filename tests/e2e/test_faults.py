"""Faults between Helpline and its database: clear retryable errors while they last, nothing lost.

Every fault here is real: a lock held by another connection, backends terminated by
PostgreSQL, a TCP proxy that cuts or silences the connections, SIGTERM to the server.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import httpx2 as httpx
import pytest
from starlette.testclient import TestClient

from gql.http.app import create_app
from gql.http.settings import Settings
from repo.database import database
from repo.models import Conversation, Message
from tests.e2e.conftest import running_server, service_token, user_token
from tests.factories import make_admin, make_legacy_user, make_user
from tests.faults import holding_the_profile_lock, terminate_helpline_backends
from tests.invariants import assert_guarantees_hold
from tests.proxy import TcpProxy

OPEN = "mutation ($c: UUID!) { adminConversation(customerId: $c) { conversation { id } } }"
SERVICE = {"authorization": f"Bearer {service_token()}"}


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: int  # 0: no HTTP response at all (the server was gone)
    code: str | None = None
    conversation: str | None = None
    retry_after: str | None = None


def outcome(response: Any) -> Outcome:
    body = response.json()  # never a bare 500 page: every answer is GraphQL JSON
    if body.get("errors"):
        return Outcome(
            response.status_code,
            body["errors"][0]["extensions"]["code"],
            retry_after=response.headers.get("retry-after"),
        )
    return Outcome(
        response.status_code, conversation=body["data"]["adminConversation"]["conversation"]["id"]
    )


def open_over_http(url: str, customer: UUID, *, timeout: float = 30) -> Outcome:
    try:
        response = httpx.post(
            url,
            json={"query": OPEN, "variables": {"c": str(customer)}},
            headers=SERVICE,
            timeout=timeout,
        )
    except httpx.ConnectError:
        return Outcome(0, "REFUSED")  # nobody listening: the request never started
    except httpx.TransportError as exc:
        return Outcome(0, f"DROPPED: {type(exc).__name__}")  # started, never answered
    return outcome(response)


def assert_retryable(outcomes: list[Outcome]) -> None:
    """Every failure is SERVICE_UNAVAILABLE, HTTP 503 with Retry-After; nothing else."""
    failures = [o for o in outcomes if o.status != 200]
    assert {(o.status, o.code, o.retry_after) for o in failures} <= {
        (503, "SERVICE_UNAVAILABLE", "1")
    }, failures


def until_open(url: str, customer: UUID, *, within_s: float = 20) -> Outcome:
    """Retry as a client would (Retry-After) until the call succeeds; fail after ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        result = open_over_http(url, customer)
        if result.status == 200:
            return result
        assert_retryable([result])
        assert time.monotonic() < deadline, f"still failing after {within_s} s: {result}"
        time.sleep(0.2)


def conversations_of(customers: list[UUID]) -> dict[str, list[str]]:
    with database.connection_context():
        rows = Conversation.select(Conversation.customer, Conversation.id).where(
            Conversation.customer.in_(customers)
        )
        found: dict[str, list[str]] = {}
        for row in rows:
            found.setdefault(str(row.customer_id), []).append(str(row.id))
        return found


# --- a stuck lock holder ---------------------------------------------------------------------


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "generic-path"])
def test_a_caller_behind_a_stuck_lock_gets_service_unavailable_within_the_lock_timeout(
    db: Settings, fast_path: bool
) -> None:
    settings = db.replaced(db_lock_timeout_ms=300, sqlite_busy_timeout_ms=300)
    make_admin()
    customer = make_user()  # a profile, no conversation yet: the first call must lock it
    token = {"authorization": f"Bearer {user_token(customer)}"}
    body = {"query": "mutation { adminConversation { created conversation { id } } }"}

    with TestClient(create_app(settings, fast_path=fast_path)) as http:
        fast_paths = http.app.state.fast_paths  # type: ignore[attr-defined]
        assert (fast_paths is not None) == fast_path  # the path under test
        answered = fast_paths.answered if fast_path else 0
        with holding_the_profile_lock(settings, customer):
            started = time.monotonic()
            refused = http.post("/graphql", json=body, headers=token)
            waited = time.monotonic() - started
            assert conversations_of([customer]) == {}  # nothing half-written
        served = http.post("/graphql", json=body, headers=token)

    assert (refused.status_code, refused.headers["retry-after"]) == (503, "1")
    assert refused.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert "SELECT" not in refused.text and "lock" not in refused.text.lower()  # no driver text
    assert waited < 5  # a guard against hanging until someone lets go, not a speed test
    assert served.status_code == 200
    assert served.json()["data"]["adminConversation"]["created"] is True
    if fast_path:
        assert fast_paths.answered - answered == 2  # both answered by the fast path
    assert_guarantees_hold()


def test_an_exhausted_pool_answers_503_after_the_pool_timeout_then_serves(db: Settings) -> None:
    settings = db.replaced(db_pool_size=1, db_pool_timeout=0.5)
    make_admin()
    customer = make_user()
    token = {"authorization": f"Bearer {user_token(customer)}"}
    body = {"query": "mutation { adminConversation { conversation { id } } }"}

    with TestClient(create_app(settings)) as http:
        database.connect()  # this thread takes the pool's only connection
        try:
            refused = http.post("/graphql", json=body, headers=token)
        finally:
            database.close()
        served = http.post("/graphql", json=body, headers=token)

    assert refused.status_code == 503
    assert refused.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert served.status_code == 200


def test_requests_beyond_the_concurrency_limit_are_shed_at_once(db: Settings) -> None:
    settings = db.replaced(
        max_concurrent_requests=1, db_lock_timeout_ms=2000, sqlite_busy_timeout_ms=2000
    )
    make_admin()
    stuck, other = make_user(), make_user()
    body = {"query": "mutation { adminConversation { conversation { id } } }"}

    with TestClient(create_app(settings)) as http:
        with holding_the_profile_lock(settings, stuck), ThreadPoolExecutor(1) as pool:
            blocked = pool.submit(
                http.post,
                "/graphql",
                json=body,
                headers={"authorization": f"Bearer {user_token(stuck)}"},
            )
            deadline = time.monotonic() + 5
            while http.app.state.in_flight.count == 0:  # type: ignore[attr-defined]
                assert time.monotonic() < deadline
                time.sleep(0.01)
            shed = http.post(
                "/graphql", json=body, headers={"authorization": f"Bearer {user_token(other)}"}
            )
            alive = http.get("/live")
        blocked.result(timeout=10)
        served = http.post(
            "/graphql", json=body, headers={"authorization": f"Bearer {user_token(other)}"}
        )

    assert (shed.status_code, shed.headers["retry-after"]) == (503, "1")
    assert shed.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert alive.status_code == 200  # liveness probes are never shed
    assert served.status_code == 200


# --- connections lost: terminated backends, a cut or silent network ---------------------------


def test_terminated_backends_answer_503_at_worst_and_the_pool_heals(
    postgres: Settings, tmp_path: Path
) -> None:
    make_admin()
    customers = [make_legacy_user() for _ in range(48)]  # users rows, no profile: first calls
    outcomes: list[Outcome] = []
    with running_server(postgres, tmp_path / "server.log", DB_POOL_SIZE="6") as server:
        for customer in customers[:4]:  # the pool holds connections now
            assert open_over_http(server.url, customer).status == 200
        terminated = 0
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(open_over_http, server.url, c) for c in customers[4:]]
            for _ in range(3):
                time.sleep(0.15)
                terminated += terminate_helpline_backends(postgres)
            outcomes = [f.result(timeout=60) for f in futures]
        healed = [until_open(server.url, c) for c in customers]

    assert terminated > 0
    assert_retryable(outcomes)
    assert all(o.status == 200 for o in healed)
    found = conversations_of(customers)
    assert {c: len(ids) for c, ids in found.items()} == {str(c): 1 for c in customers}
    for customer, result in zip(customers, healed, strict=True):
        assert found[str(customer)] == [result.conversation]
    assert_guarantees_hold()


def test_a_cut_or_silent_network_answers_503_while_it_lasts_then_heals(
    postgres: Settings, tmp_path: Path
) -> None:
    make_admin()
    customers = [make_legacy_user() for _ in range(24)]
    target = urlsplit(postgres.database.database_url)
    with TcpProxy(target.port or 5432) as proxy:
        proxied = postgres.replaced(
            database_url=urlunsplit(
                target._replace(netloc=f"{target.username}@127.0.0.1:{proxy.port}")
            ),
        )
        with running_server(
            proxied,
            tmp_path / "server.log",
            LISTEN_DATABASE_URL=postgres.database.database_url,  # live messages are not under test
            REQUEST_TIMEOUT_SECONDS="2",
            DB_POOL_TIMEOUT="2",
        ) as server:
            before = [open_over_http(server.url, c) for c in customers[:4]]

            proxy.cut()  # as a database restart: connections reset, new ones refused
            during_cut = [open_over_http(server.url, c) for c in customers[4:8]]
            proxy.restore()
            after_cut = [until_open(server.url, c) for c in customers[8:12]]

            proxy.stall()  # the network goes silent: no error, no reply
            started = time.monotonic()
            during_stall = [open_over_http(server.url, c) for c in customers[12:15]]
            stalled_for = time.monotonic() - started
            proxy.restore()
            after_stall = [until_open(server.url, c) for c in customers[15:]]

            everyone = [until_open(server.url, c) for c in customers]

    assert all(o.status == 200 for o in before + after_cut + after_stall + everyone)
    assert during_cut and all(o.status == 503 for o in during_cut)
    assert during_stall and all(o.status == 503 for o in during_stall)
    assert_retryable(during_cut + during_stall)
    assert stalled_for < 3 * 10  # each answered after REQUEST_TIMEOUT_SECONDS, never a hang
    found = conversations_of(customers)
    assert {c: len(ids) for c, ids in found.items()} == {str(c): 1 for c in customers}
    assert_guarantees_hold()


# --- SIGTERM -------------------------------------------------------------------------------


def test_sigterm_during_load_keeps_every_acknowledged_conversation_whole(
    db: Settings, tmp_path: Path
) -> None:
    make_admin()
    customers = [make_legacy_user() for _ in range(300)]
    outcomes: dict[UUID, Outcome] = {}
    lock = threading.Lock()
    queue = list(customers)

    def client() -> None:
        while True:
            with lock:
                if not queue:
                    return
                customer = queue.pop()
            result = open_over_http(server.url, customer, timeout=30)
            with lock:
                outcomes[customer] = result
            if result.status == 0:
                return  # the server stopped listening

    with running_server(
        db, tmp_path / "server.log", SHUTDOWN_TIMEOUT_SECONDS="10", REQUEST_TIMEOUT_SECONDS="10"
    ) as server:
        assert server.process is not None
        threads = [threading.Thread(target=client) for _ in range(6)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(outcomes) < 40:
            assert time.monotonic() < deadline, "the load never got going"
            time.sleep(0.01)
        os.kill(server.pid, signal.SIGTERM)
        exit_code = server.process.wait(timeout=30)
        for thread in threads:
            thread.join(timeout=30)

    # uvicorn stops gracefully, then re-raises SIGTERM so the exit status tells why it ended
    assert exit_code in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server.log.read_text()  # the lifespan ran to its end
    acknowledged = {c: o.conversation for c, o in outcomes.items() if o.status == 200}
    assert len(acknowledged) >= 40
    # In flight at SIGTERM: answered. After it: refused at connect, or, for a connection
    # accepted while the server was stopping whose request it had not read yet, closed
    # unanswered (uvicorn closes idle connections as it stops). Never a 500 or an error body.
    dropped = {c for c, o in outcomes.items() if (o.code or "").startswith("DROPPED")}
    assert {
        (o.status, o.code) for c, o in outcomes.items() if o.status != 200 and c not in dropped
    } <= {
        (0, "REFUSED"),
        (503, "SERVICE_UNAVAILABLE"),
    }
    found = conversations_of(customers)
    for customer, conversation in acknowledged.items():
        assert found.get(str(customer)) == [conversation]  # every 200 has its rows
    assert not dropped & {UUID(c) for c in found}  # a request closed unanswered never ran
    with database.connection_context():
        welcomed = {
            str(m.conversation_id)
            for m in Message.select(Message.conversation).where(
                Message.conversation.in_([c for ids in found.values() for c in ids])
            )
        }
    assert welcomed == {c for ids in found.values() for c in ids}  # none half-written
    assert_guarantees_hold()


def test_clients_that_never_send_their_body_hold_no_slot_and_probes_pass(
    postgres: Settings, tmp_path: Path
) -> None:
    make_admin()
    customer = make_user()
    with running_server(postgres, tmp_path / "server.log", MAX_CONCURRENT_REQUESTS="2") as server:
        port = urlsplit(server.url).port or 80
        silent = []
        for _ in range(4):  # twice the limit: headers sent, then nothing
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(
                b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 500\r\n\r\n{"query":'
            )
            silent.append(sock)
        try:
            answered = open_over_http(server.url, customer)
            ready = httpx.get(f"{server.base}/ready", timeout=10)
        finally:
            for sock in silent:
                sock.close()

    assert answered.status == 200
    assert ready.status_code == 200
