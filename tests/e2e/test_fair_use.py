"""Fair use per caller (issue #25): sockets per address and per caller, subscriptions per
caller, and each sender's allowance of messages, against real servers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import httpx2 as httpx
import pytest
from starlette.testclient import TestClient
from websockets.asyncio.client import ClientConnection, connect

from gql.http.app import create_app
from gql.http.settings import Settings
from tests.e2e.conftest import running_server, service_token, user_token
from tests.e2e.test_subscriptions import serve_in_process
from tests.e2e.wsclient import GUARD_S, PROTOCOL, SUBSCRIBE_MESSAGES, Subscription, ws_url
from tests.factories import first_contact, make_admin, make_user

T = TypeVar("T")
# The bounds are the transport's and the HTTP layer's, whatever the backend: their tests run
# on SQLite (the allowance's SQL runs on both in tests/integration/test_allowance.py, and on
# PostgreSQL across processes below).
ON_SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
SEND = (
    "mutation ($c: UUID!, $t: String!, $k: String) "
    "{ sendMessage(conversationId: $c, content: $t, clientMessageId: $k) { id content } }"
)
# The same send, which the fast path does not plan (a directive): the executor answers it.
SEND_GENERIC = SEND.replace("{ id content }", "{ id content @include(if: true) }")


OPENED: list[ClientConnection] = []  # closed after each test (close_opened)


async def raw_socket(url: str, source: str = "127.0.0.1") -> ClientConnection:
    """A socket that has not said who it is (no connection_init), from ``source``."""
    socket = await connect(
        ws_url(url),
        subprotocols=[PROTOCOL],  # type: ignore[list-item]
        local_addr=(source, 0),
        open_timeout=GUARD_S,
    )
    OPENED.append(socket)
    return socket


async def closing(work: Awaitable[T]) -> T:
    """``work``, then every socket it opened closed."""
    try:
        return await work
    finally:
        await asyncio.gather(*(s.close() for s in OPENED), return_exceptions=True)
        OPENED.clear()


async def closed_with(socket: ClientConnection) -> int | None:
    """The code the server closes ``socket`` with (None: still open after GUARD_S)."""
    with contextlib.suppress(Exception):
        while True:
            await asyncio.wait_for(socket.recv(), GUARD_S)
    return socket.close_code


async def initialised(url: str, token: str, source: str = "127.0.0.1") -> ClientConnection:
    socket = await raw_socket(url, source)
    payload = {"Authorization": f"Bearer {token}"}
    await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
    return socket


async def acked(socket: ClientConnection) -> bool:
    """Whether the server acknowledged the socket's connection_init (False: it closed it)."""
    try:
        reply = json.loads(await asyncio.wait_for(socket.recv(), GUARD_S))
    except Exception:
        return False
    return bool(reply["type"] == "connection_ack")


@ON_SQLITE
@pytest.mark.parametrize("pending", [None, 2])
def test_an_address_holds_a_bounded_number_of_sockets_not_yet_initialised(
    db: Settings, pending: int | None
) -> None:
    settings = db if pending is None else db.replaced(ws_max_pending_per_address=pending)
    bound = settings.ws.ws_max_pending_per_address
    assert pending is not None or bound == 20  # the default

    async def scenario() -> tuple[list[int | None], int | None, bool, bool]:
        waiting = [await raw_socket(url) for _ in range(bound)]
        refused = await closed_with(await raw_socket(url))
        elsewhere = await initialised(url, service_token(), "127.0.0.2")  # another address
        other_address_ok = await acked(elsewhere)
        await waiting[0].send(  # one of them says who it is: a place is free again
            json.dumps(
                {
                    "type": "connection_init",
                    "payload": {"Authorization": f"Bearer {service_token()}"},
                }
            )
        )
        assert await acked(waiting[0])
        room_again = await acked(await initialised(url, service_token()))
        return [s.close_code for s in waiting], refused, other_address_ok, room_again

    with serve_in_process(settings) as (url, _app):
        open_codes, refused, other_address_ok, room_again = asyncio.run(closing(scenario()))
    assert open_codes == [None] * bound  # every one within the bound was kept open
    assert refused == 4429
    assert other_address_ok and room_again


@ON_SQLITE
def test_a_socket_that_never_initialises_is_closed_after_the_init_timeout(db: Settings) -> None:
    assert Settings().ws.ws_init_timeout_s == 5.0  # the default

    async def scenario() -> tuple[int | None, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        code = await closed_with(await raw_socket(url))
        return code, loop.time() - started

    with serve_in_process(db.replaced(ws_init_timeout_s=0.5)) as (url, _app):
        code, waited = asyncio.run(closing(scenario()))
    assert code == 4408
    assert 0.4 < waited < GUARD_S


@ON_SQLITE
@pytest.mark.parametrize("per_caller", [None, 2])
def test_a_caller_holds_a_bounded_number_of_sockets_and_service_role_is_not_counted(
    db: Settings, per_caller: int | None
) -> None:
    settings = db if per_caller is None else db.replaced(ws_max_sockets_per_caller=per_caller)
    bound = settings.ws.ws_max_sockets_per_caller
    assert per_caller is not None or bound == 10  # the default
    customer, other = make_user(), make_user()

    async def scenario() -> tuple[list[bool], bool, bool, list[bool], bool]:
        token = user_token(customer)
        held = [await initialised(url, token, f"127.0.0.{10 + i}") for i in range(bound)]
        kept = [await acked(s) for s in held]
        over = await initialised(url, token, "127.0.0.99")
        over_acked = await acked(over)
        assert over.close_code == 4429, over.close_code
        someone_else = await acked(await initialised(url, user_token(other)))
        service = [
            await acked(await initialised(url, service_token(), f"127.0.1.{i}"))
            for i in range(bound + 2)
        ]
        await held[0].close()
        while len(app.state.view.quotas.callers[customer_key]) >= bound:  # until it hears
            await asyncio.sleep(0.02)
        room_again = await acked(await initialised(url, token))
        return kept, over_acked, someone_else, service, room_again

    customer_key = customer  # the token's sub: how the server counts the caller's sockets
    with serve_in_process(settings.replaced(ws_max_connections=100)) as (url, app):
        kept, over_acked, someone_else, service, room_again = asyncio.run(closing(scenario()))
    assert kept == [True] * bound
    assert not over_acked
    assert someone_else and all(service) and room_again


@ON_SQLITE
@pytest.mark.parametrize("per_caller", [None, 3])
def test_a_callers_subscriptions_are_bounded_across_their_sockets(
    db: Settings, per_caller: int | None
) -> None:
    settings = db if per_caller is None else db.replaced(ws_max_subscriptions_per_caller=per_caller)
    bound = settings.ws.ws_max_subscriptions_per_caller
    assert per_caller is not None or bound == 50  # the default
    make_admin()
    customer = make_user()
    conversation = str(first_contact(customer).conversation.id)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any] | None]:
        token = user_token(customer)
        per_socket = settings.ws.ws_max_subscriptions
        sockets = [
            await Subscription.open(url, token)
            for _ in range(-(-(bound + 1) // per_socket) + 1)  # room for one more than bound
        ]
        for n in range(bound):
            await sockets[n // per_socket].subscribe(conversation, f"s{n}")
        while held() < bound:  # a subscribe has no answer: wait until the server holds them
            await asyncio.sleep(0.02)
        last = sockets[-1]
        await last.subscribe(conversation, "over")
        refused = await last.receive()
        await sockets[0].socket.send(json.dumps({"id": "s0", "type": "complete"}))
        while held() >= bound:  # until the server has ended it
            await asyncio.sleep(0.02)
        await last.subscribe(conversation, "again")
        answer: dict[str, Any] | None = None
        with contextlib.suppress(TimeoutError):
            answer = await last.receive(timeout=1)
        for sub in sockets:
            await sub.close()
        return refused, answer

    def held() -> int:
        quotas = app.state.view.quotas
        return sum(len(t.operations) for tickets in quotas.callers.values() for t in tickets)

    with serve_in_process(settings) as (url, app):
        refused, after_complete = asyncio.run(closing(scenario()))
    assert refused["type"] == "error" and refused["id"] == "over"
    assert refused["payload"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
    assert f"at most {bound} subscriptions per caller" in refused["payload"][0]["message"]
    assert after_complete is None  # a place was free again: no error (nothing sent yet)


@ON_SQLITE
def test_a_widget_and_a_console_never_meet_the_socket_bounds(db: Settings) -> None:
    """One widget (a socket, a few subscriptions) and an admin's console in three tabs."""
    admin = make_admin()
    customer = make_user()
    conversation = str(first_contact(customer).conversation.id)
    inbox = "subscription { inboxUpdated { conversation { id } } }"

    async def scenario() -> None:
        widget = await Subscription.open(url, user_token(customer))
        for n in range(3):
            await widget.subscribe(conversation, f"w{n}")
        tabs = [await Subscription.open(url, user_token(admin)) for _ in range(3)]
        for tab in tabs:
            await tab.subscribe(conversation, "chat", query=SUBSCRIBE_MESSAGES)
            await tab.subscribe(conversation, "inbox", query=inbox)
        for sub in (widget, *tabs):
            with contextlib.suppress(TimeoutError):
                frame = await sub.receive(timeout=0.3)
                raise AssertionError(f"unexpected {frame}")
            assert sub.socket.close_code is None
            await sub.close()

    with serve_in_process(db) as (url, _app):
        asyncio.run(closing(scenario()))


def _send(
    http: TestClient,
    token: str,
    conversation: UUID,
    text: str,
    *,
    key: str | None = None,
    query: str = SEND,
) -> httpx.Response:
    return http.post(
        "/graphql",
        json={"query": query, "variables": {"c": str(conversation), "t": text, "k": key}},
        headers={"authorization": f"Bearer {token}"},
    )


@ON_SQLITE
@pytest.mark.parametrize("query", [SEND, SEND_GENERIC], ids=["fast path", "executor"])
@pytest.mark.parametrize("per_minute", [None, 3])
def test_a_sender_over_their_allowance_gets_429_rate_limited_and_when_to_retry(
    db: Settings, per_minute: int | None, query: str
) -> None:
    settings = db if per_minute is None else db.replaced(rate_limit_messages_per_minute=per_minute)
    limit = settings.graphql.rate_limit_messages_per_minute
    assert per_minute is not None or limit == 60  # the default
    make_admin()
    customer = make_user()
    conversation = first_contact(customer).conversation.id
    token = user_token(customer)
    with TestClient(create_app(settings), raise_server_exceptions=False) as http:
        sent = [
            _send(http, token, conversation, f"m{i}", key=f"k{i}", query=query)
            for i in range(limit)
        ]
        refused = _send(http, token, conversation, "one too many", query=query)
        retried = _send(http, token, conversation, "m0", key="k0", query=query)
        read = http.post(
            "/graphql",
            json={"query": "{ adminConversation { conversation { id } } }"},
            headers={"authorization": f"Bearer {token}"},
        )

    assert [r.status_code for r in sent] == [200] * limit
    assert {r.headers["x-ratelimit-limit"] for r in sent} == {str(limit)}
    assert [int(r.headers["x-ratelimit-remaining"]) for r in sent] == list(range(limit - 1, -1, -1))
    assert refused.status_code == 429
    (error,) = refused.json()["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    wait = int(refused.headers["retry-after"])
    assert 0 < wait <= 60 // limit
    assert error["extensions"]["retryAfterSeconds"] == wait
    assert f"at most {limit} a minute" in error["message"]
    assert refused.headers["x-ratelimit-remaining"] == "0"
    # a retry of a message already stored costs nothing and still succeeds
    assert retried.status_code == 200
    assert (
        retried.json()["data"]["sendMessage"]["id"] == sent[0].json()["data"]["sendMessage"]["id"]
    )
    assert "x-ratelimit-limit" not in read.headers  # only sends carry them


@ON_SQLITE
def test_staff_have_their_own_allowance_and_service_role_none(db: Settings) -> None:
    settings = db.replaced(rate_limit_messages_per_minute=1, rate_limit_staff_messages_per_minute=4)
    admin = make_admin()
    conversation = first_contact(make_user()).conversation.id
    with TestClient(create_app(settings), raise_server_exceptions=False) as http:
        staff = [
            _send(http, user_token(admin), conversation, f"a{i}").status_code for i in range(5)
        ]
        service = [_send(http, service_token(), conversation, f"s{i}") for i in range(5)]

    assert staff == [200, 200, 200, 200, 429]
    assert [r.status_code for r in service] == [200] * 5
    assert all("x-ratelimit-limit" not in r.headers for r in service)


def test_the_allowance_is_shared_by_every_process_on_the_database(
    postgres: Settings, tmp_path: Path
) -> None:
    make_admin()
    customer = make_user()
    token = user_token(customer)
    statuses: list[int] = []
    with running_server(
        postgres, tmp_path / "server.log", workers=2, RATE_LIMIT_MESSAGES_PER_MINUTE="5"
    ) as server:
        conversation = first_contact(customer).conversation.id
        for i in range(12):  # a new connection each: the kernel spreads them over the workers
            with httpx.Client(timeout=GUARD_S) as http:
                answer = http.post(
                    server.url,
                    json={"query": SEND, "variables": {"c": str(conversation), "t": f"m{i}"}},
                    headers={"authorization": f"Bearer {token}", "connection": "close"},
                )
            statuses.append(answer.status_code)
    assert statuses == [200] * 5 + [429] * 7
