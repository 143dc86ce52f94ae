"""Live messages over a real WebSocket: order, exactly once, roles, fan-out, resilience, limits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import httpx2 as httpx
import psycopg2
import pytest
import uvicorn
from websockets.exceptions import ConnectionClosed

from gql.http.app import create_app
from gql.http.settings import Settings
from gql.ops.tokens import mint
from repo.database import database
from repo.demo import CUSTOMER
from repo.ids import ConversationId, ProfileId
from repo.messages import send_message
from repo.models import Profile
from tests.conftest import TEST_JWT_SECRET
from tests.e2e.conftest import Server, free_port, running_server, service_token, user_token
from tests.e2e.wsclient import GUARD_S, Subscription, close_code, until_flowing
from tests.factories import first_contact, make_admin, make_user
from tests.proxy import TcpProxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
SUBSCRIBERS = 200
SEND = (
    "mutation ($id: UUID!, $text: String!) "
    "{ sendMessage(conversationId: $id, content: $text) { id } }"
)
OPEN = "mutation { adminConversation { conversation { id } } }"
SUBSCRIBE_WITH_CLIENT_IDS = (
    "subscription ($id: UUID!) "
    "{ messageAdded(conversationId: $id) { id content clientMessageId sender { id } } }"
)


def post(url: str, query: str, token: str, **variables: Any) -> dict[str, Any]:
    response = httpx.post(
        url,
        json={"query": query, "variables": variables},
        timeout=30,
        headers={"authorization": f"Bearer {token}"},
    )
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return body["data"]


async def send_over_http(url: str, token: str, conversation: str, text: str) -> None:
    await asyncio.to_thread(post, url, SEND, token, id=conversation, text=text)


async def until_live(sub: Subscription, url: str, token: str, conversation: str) -> None:
    """Return once the messageAdded subscription hears probes sent to the conversation."""

    def is_probe(frame: dict[str, Any]) -> bool:
        return bool(frame["payload"]["data"]["messageAdded"]["content"] == "probe")

    await until_flowing(
        sub, lambda: send_over_http(url, token, conversation, "probe"), is_probe=is_probe
    )


def open_conversation(url: str, token: str) -> str:
    conversation: str = post(url, OPEN, token)["adminConversation"]["conversation"]["id"]
    return conversation


def test_messages_arrive_in_order_exactly_once(server: Server) -> None:
    token = user_token(CUSTOMER.id)
    conversation = open_conversation(server.url, token)

    async def scenario() -> list[str]:
        sub = await Subscription.open(server.url, token)
        await sub.subscribe(conversation)
        await until_live(sub, server.url, token, conversation)
        for i in range(20):
            await send_over_http(server.url, token, conversation, f"m{i}")
        received = [(await sub.next_message())["content"] for _ in range(20)]
        with pytest.raises(TimeoutError):
            await sub.next_message(timeout=0.5)  # nothing twice
        await sub.close()
        return received

    assert asyncio.run(scenario()) == [f"m{i}" for i in range(20)]


def test_a_retried_send_is_heard_once(server: Server) -> None:
    token = user_token(CUSTOMER.id)
    conversation = open_conversation(server.url, token)
    send = (
        "mutation ($id: UUID!, $text: String!, $key: String!) "
        "{ sendMessage(conversationId: $id, content: $text, clientMessageId: $key) { id } }"
    )

    async def scenario() -> tuple[list[str], list[dict[str, Any]]]:
        sub = await Subscription.open(server.url, token)
        await sub.subscribe(conversation, query=SUBSCRIBE_WITH_CLIENT_IDS)
        await until_live(sub, server.url, token, conversation)
        sent = [
            (await asyncio.to_thread(post, server.url, send, token, **variables))["sendMessage"]
            for variables in [
                {"id": conversation, "text": "only once", "key": "tap-1"},
                {"id": conversation, "text": "only once", "key": "tap-1"},  # a lost response
                {"id": conversation, "text": "next", "key": "tap-2"},
            ]
        ]
        heard = [await sub.next_message() for _ in range(2)]
        with pytest.raises(TimeoutError):
            await sub.next_message(timeout=0.5)  # nothing twice
        await sub.close()
        return [s["id"] for s in sent], heard

    sent, heard = asyncio.run(scenario())
    assert sent[0] == sent[1] != sent[2]
    me = {"id": str(CUSTOMER.id)}
    assert heard == [
        {"id": sent[0], "content": "only once", "clientMessageId": "tap-1", "sender": me},
        {"id": sent[2], "content": "next", "clientMessageId": "tap-2", "sender": me},
    ]


def test_a_message_sent_through_one_process_reaches_a_subscriber_of_another(
    postgres: Settings, tmp_path: Path
) -> None:
    with (
        running_server(postgres, tmp_path / "a.log") as a,
        running_server(postgres, tmp_path / "b.log") as b,
    ):
        token = user_token(CUSTOMER.id)
        conversation = open_conversation(a.url, token)

        async def scenario() -> str:
            sub = await Subscription.open(a.url, token)
            await sub.subscribe(conversation)
            await until_live(sub, b.url, token, conversation)
            await send_over_http(b.url, token, conversation, "from the other process")
            content: str = (await sub.next_message())["content"]
            await sub.close()
            return content

        assert asyncio.run(scenario()) == "from the other process"


def test_roles_hold_on_the_socket(server: Server) -> None:
    other = make_user()
    theirs = first_contact(other).conversation.id

    async def scenario() -> tuple[dict[str, Any], list[int | None]]:
        sub = await Subscription.open(server.url, user_token(CUSTOMER.id))
        await sub.subscribe(str(theirs))
        refused = await sub.receive()
        await sub.close()
        codes = [
            await close_code(server.url, {}),
            await close_code(server.url, {"Authorization": "Bearer not-a-token"}),
            await close_code(
                server.url, {"Authorization": f"Bearer {user_token(CUSTOMER.id, expires_in=-60)}"}
            ),
            await close_code(server.url, {"Authorization": "Bearer " + _role_token("postgres")}),
        ]
        return refused, codes

    refused, codes = asyncio.run(scenario())
    assert refused["type"] == "next" and refused["payload"]["data"] is None
    assert refused["payload"]["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert codes == [4401, 4401, 4401, 4401]  # graphql-ws's client gives up on 4401 at once


def _role_token(role: str) -> str:
    return mint(TEST_JWT_SECRET, role=role)


SMUGGLED_SEND = 'sendMessage(conversationId: $id, content: "smuggled") { id }'
SMUGGLED_SUBSCRIBE = "messageAdded(conversationId: $id) { id content }"
MUTATION_FIRST = (
    f"mutation M($id: UUID!) {{ {SMUGGLED_SEND} }} "
    f"subscription S($id: UUID!) {{ {SMUGGLED_SUBSCRIBE} }}"
)
QUERY_FIRST = (
    "query Q($id: UUID!) { conversation(id: $id) { id } } "
    f"subscription S($id: UUID!) {{ {SMUGGLED_SUBSCRIBE} }}"
)


async def subscribe_raw(sub: Subscription, operation_id: str, payload: dict[str, Any]) -> None:
    await sub.socket.send(json.dumps({"id": operation_id, "type": "subscribe", "payload": payload}))


def contents(url: str, token: str, conversation: str) -> list[str]:
    query = (
        "query ($id: UUID!) "
        "{ conversation(id: $id) { messages(first: 100) { edges { node { content } } } } }"
    )
    edges = post(url, query, token, id=conversation)["conversation"]["messages"]["edges"]
    return [edge["node"]["content"] for edge in edges]


@pytest.mark.parametrize(
    ("document", "operation_name", "reason"),
    [
        (MUTATION_FIRST, None, "Must provide operation name"),
        (MUTATION_FIRST, "M", "only subscriptions run over WebSocket"),
        (QUERY_FIRST, None, "Must provide operation name"),
        (QUERY_FIRST, "Q", "only subscriptions run over WebSocket"),
        ("{ integrity { orphanedConversationCount } }", None, "only subscriptions"),
        (MUTATION_FIRST, "Nope", "Unknown operation named 'Nope'"),
    ],
    ids=["mutation-first", "mutation-named", "query-first", "query-named", "query", "unknown"],
)
def test_only_subscriptions_run_over_the_socket(
    server: Server, document: str, operation_name: str | None, reason: str
) -> None:
    token = user_token(CUSTOMER.id)
    conversation = open_conversation(server.url, token)
    payload = {
        "query": document,
        "operationName": operation_name,
        "variables": {"id": conversation},
    }

    async def scenario() -> dict[str, Any]:
        sub = await Subscription.open(server.url, token)
        await subscribe_raw(sub, "smuggled", payload)
        reply = await sub.receive()
        await sub.close()
        return reply

    reply = asyncio.run(scenario())
    assert reply["type"] == "error" and reply["id"] == "smuggled", reply
    (error,) = reply["payload"]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert reason in error["message"]
    assert "smuggled" not in contents(server.url, token, conversation)


def test_the_subscription_named_in_a_mixed_document_runs_and_nothing_else(server: Server) -> None:
    token = user_token(CUSTOMER.id)
    conversation = open_conversation(server.url, token)
    payload = {"query": MUTATION_FIRST, "operationName": "S", "variables": {"id": conversation}}

    async def scenario() -> dict[str, Any]:
        sub = await Subscription.open(server.url, token)
        await subscribe_raw(sub, "s", payload)
        await until_live(sub, server.url, token, conversation)
        await asyncio.to_thread(post, server.url, SEND, token, id=conversation, text="real")
        received = await sub.next_message()
        await sub.close()
        return received

    assert asyncio.run(scenario())["content"] == "real"
    assert "smuggled" not in contents(server.url, token, conversation)


def test_the_socket_applies_the_configured_token_limit(db: Settings) -> None:
    make_admin()
    conversation = str(first_contact(make_user()).conversation.id)
    fields = " ".join(["id"] * 140)
    big = f"subscription ($id: UUID!) {{ messageAdded(conversationId: $id) {{ {fields} }} }}"
    with serve_in_process(db.replaced(max_tokens=100)) as (url, _app):

        async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
            sub = await Subscription.open(url, service_token())
            await sub.subscribe(conversation, "big", query=big)
            refused = await sub.receive()
            await sub.socket.send(json.dumps({"id": "x", "type": "subscribe", "payload": {}}))
            malformed = await sub.receive()
            await sub.close()
            return refused, malformed

        refused, malformed = asyncio.run(scenario())
    assert refused["type"] == "error" and refused["id"] == "big", refused
    assert refused["payload"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert "more than 100 tokens" in refused["payload"][0]["message"]
    assert malformed["type"] == "error"
    assert malformed["payload"][0]["extensions"]["code"] == "BAD_REQUEST"


def test_the_event_loop_stays_free_while_subscriptions_wait_on_locked_tables(
    postgres: Settings, tmp_path: Path
) -> None:
    """A socket never waits on the database on the event loop: with the tables locked, a
    subscription's set-up and a smuggled mutation wait (or are refused) while /live answers."""
    log = tmp_path / "server.log"
    with running_server(postgres, log, DB_LOCK_TIMEOUT_MS="10000") as server:
        token = user_token(CUSTOMER.id)
        conversation = open_conversation(server.url, token)
        holder = psycopg2.connect(postgres.database.database_url)
        live_seconds: list[float] = []

        async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
            sub = await Subscription.open(server.url, token)
            with holder.cursor() as cursor:
                cursor.execute("LOCK TABLE conversations, messages IN ACCESS EXCLUSIVE MODE")
            locked_at = time.monotonic()
            await sub.subscribe(conversation, "behind-the-lock")
            variables = {"id": conversation}
            await subscribe_raw(sub, "smuggled", {"query": MUTATION_FIRST, "variables": variables})
            while time.monotonic() - locked_at < 5:
                started = time.monotonic()
                response = await asyncio.to_thread(httpx.get, f"{server.base}/live", timeout=10)
                live_seconds.append(time.monotonic() - started)
                assert response.status_code == 200
                await asyncio.sleep(0.25)
            refused = await sub.receive()
            holder.rollback()  # the lock goes; the waiting subscription sets up
            await until_live(sub, server.url, token, conversation)
            await asyncio.to_thread(post, server.url, SEND, token, id=conversation, text="after")
            delivered = await sub.next_message()
            await sub.close()
            return refused, delivered

        try:
            refused, delivered = asyncio.run(scenario())
        finally:
            holder.close()
        assert refused["id"] == "smuggled" and refused["type"] == "error", refused
        assert max(live_seconds) < 1, live_seconds
        assert len(live_seconds) >= 10
        assert delivered["content"] == "after"
        assert "smuggled" not in contents(server.url, token, conversation)


def test_messages_stored_while_the_listener_is_away_arrive_by_catching_up(
    postgres: Settings, tmp_path: Path
) -> None:
    """The listener's connection goes through a proxy that is cut and stays cut while
    messages are stored: only the catch-up from the database can deliver them."""
    token = user_token(CUSTOMER.id)
    target = urlsplit(postgres.database.database_url)
    with TcpProxy(target.port or 5432) as proxy:
        netloc = f"{target.username}@127.0.0.1:{proxy.port}"
        listen_url = urlunsplit(target._replace(netloc=netloc))
        with running_server(
            postgres, tmp_path / "server.log", LISTEN_DATABASE_URL=listen_url
        ) as server:
            conversation = open_conversation(server.url, token)

            async def scenario() -> tuple[list[str], list[str]]:
                sub = await Subscription.open(server.url, token)
                await sub.subscribe(conversation)
                await until_live(sub, server.url, token, conversation)
                proxy.cut()  # the listener's connection resets; reconnecting is refused
                for n in range(3):
                    await send_over_http(server.url, token, conversation, f"away {n}")
                with pytest.raises(TimeoutError):  # nothing can deliver them live
                    await sub.next_message(timeout=1.5)
                proxy.restore()
                caught_up = [(await sub.next_message())["content"] for _ in range(3)]
                await send_over_http(server.url, token, conversation, "back")
                live = [(await sub.next_message())["content"]]
                with pytest.raises(TimeoutError):
                    await sub.next_message(timeout=0.5)  # and nothing twice
                await sub.close()
                return caught_up, live

            caught_up, live = asyncio.run(scenario())
    assert caught_up == ["away 0", "away 1", "away 2"]
    assert live == ["back"]


def test_a_subscription_waits_out_a_database_it_cannot_read_and_then_catches_up(
    postgres: Settings, tmp_path: Path
) -> None:
    """The listener comes back while the pool still cannot reach the database (as when a new
    primary answers some connections before others): the catch-up read fails, and the
    subscription waits instead of ending, then delivers what was stored meanwhile."""
    token = user_token(CUSTOMER.id)
    target = urlsplit(postgres.database.database_url)

    def through(proxy: TcpProxy) -> str:
        return urlunsplit(target._replace(netloc=f"{target.username}@127.0.0.1:{proxy.port}"))

    with TcpProxy(target.port or 5432) as pool_proxy, TcpProxy(target.port or 5432) as listen:
        served = postgres.replaced(database_url=through(pool_proxy))
        with running_server(
            served,
            tmp_path / "server.log",
            LISTEN_DATABASE_URL=through(listen),
            REQUEST_TIMEOUT_SECONDS="2",
            DB_POOL_TIMEOUT="2",
        ) as server:
            conversation = open_conversation(server.url, token)

            async def scenario() -> list[dict[str, Any]]:
                sub = await Subscription.open(server.url, token)
                await sub.subscribe(conversation)
                await until_live(sub, server.url, token, conversation)
                pool_proxy.cut()
                listen.cut()
                for n in range(3):  # stored by another process that can reach the database
                    await asyncio.to_thread(
                        send_message,
                        ConversationId(UUID(conversation)),
                        f"stored meanwhile {n}",
                        sender_id=ProfileId(CUSTOMER.id),
                    )
                listen.restore()  # the listener is back and asks for a catch-up ...
                await asyncio.sleep(2.0)  # ... which cannot read the database yet
                pool_proxy.restore()
                frames: list[dict[str, Any]] = []
                while len(frames) < 3:
                    frame = await sub.receive()
                    if frame["type"] != "ping":  # keep-alives aside
                        frames.append(frame)
                await sub.close()
                return frames

            frames = asyncio.run(scenario())
    assert [f["type"] for f in frames] == ["next"] * 3  # no error, no complete
    contents = [f["payload"]["data"]["messageAdded"]["content"] for f in frames]
    assert contents == [f"stored meanwhile {n}" for n in range(3)]


def terminate_listener(db: Settings) -> int:
    """End the server's LISTEN connection as a database restart would; returns how many."""
    with psycopg2.connect(db.database.database_url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'helpline-listener' AND datname = current_database()"
        )
        return int(cursor.fetchone()[0])


@pytest.fixture
def inprocess(db: Settings) -> Iterator[tuple[str, Any]]:
    """The app under uvicorn in a thread of this process, so its hub can be inspected."""
    with serve_in_process(db.replaced(ws_max_connections=300)) as served:
        yield served


@contextlib.contextmanager
def serve_in_process(settings: Settings) -> Iterator[tuple[str, Any]]:
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws_max_size=65536)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/graphql", app
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def test_two_hundred_subscribers_get_a_burst_and_leave_nothing_behind(
    inprocess: tuple[str, Any],
) -> None:
    url, app = inprocess
    admin = make_admin()
    conversation = first_contact(make_user()).conversation.id
    burst = 50

    async def scenario() -> list[list[str]]:
        subs = await asyncio.gather(  # all at once, as many widgets from many addresses
            *(
                Subscription.open(url, service_token(), source=f"127.0.2.{i % 50 + 1}")
                for i in range(SUBSCRIBERS)
            )
        )
        await asyncio.gather(*(sub.subscribe(str(conversation)) for sub in subs))
        deadline = time.monotonic() + 10
        while app.state.hub.subscriber_count < SUBSCRIBERS:
            assert time.monotonic() < deadline, app.state.hub.subscriber_count
            await asyncio.sleep(0.05)
        for i in range(burst):
            await asyncio.to_thread(
                send_message, ConversationId(conversation), f"b{i}", sender_id=ProfileId(admin)
            )

        async def drain(sub: Subscription) -> list[str]:
            received: list[str] = []
            with contextlib.suppress(TimeoutError):  # a short list fails the assertion below
                while len(received) < burst:
                    received.append((await sub.next_message())["content"])
            return received

        received = await asyncio.gather(*(drain(sub) for sub in subs))
        await asyncio.gather(*(sub.close() for sub in subs))
        return received

    received = asyncio.run(scenario())
    counts = Counter(len(r) for r in received)
    assert counts == {burst: len(received)}, counts
    assert all(r == [f"b{i}" for i in range(burst)] for r in received)
    deadline = time.monotonic() + 10
    while app.state.hub.subscriber_count or app.state.view.sockets:
        left = (app.state.hub.subscriber_count, app.state.view.sockets)
        assert time.monotonic() < deadline, f"(subscribers, sockets) not cleaned up: {left}"
        time.sleep(0.05)
    assert app.state.hub.by_conversation == {} and app.state.hub.everyone == set()


def test_sockets_and_subscriptions_per_socket_are_bounded(db: Settings) -> None:
    make_admin()
    conversation = str(first_contact(make_user()).conversation.id)
    limited = db.replaced(ws_max_connections=2, ws_max_subscriptions=1)
    with serve_in_process(limited) as (url, _app):

        async def scenario() -> tuple[int | None, dict[str, Any]]:
            first = await Subscription.open(url, service_token())
            second = await Subscription.open(url, service_token())
            refused = await close_code(url, {"Authorization": f"Bearer {service_token()}"})
            await first.subscribe(conversation, "a")
            await first.subscribe(conversation, "b")
            over_limit = await first.receive()
            await first.close()
            await second.close()
            return refused, over_limit

        refused, over_limit = asyncio.run(scenario())
    assert refused == 1013
    assert over_limit["type"] == "error" and over_limit["id"] == "b"
    assert over_limit["payload"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
    assert "at most 1 subscriptions per socket" in over_limit["payload"][0]["message"]


def test_a_subscriber_whose_queue_overflows_catches_up_instead_of_ending(db: Settings) -> None:
    make_admin()
    conversation = first_contact(make_user()).conversation.id
    with serve_in_process(db.replaced(ws_queue_size=4)) as (url, app):
        hub = app.state.hub

        def burst(stored: Any) -> None:  # more than the queue holds, before the subscriber reads
            for group in hub.by_conversation.values():
                for follower in group:
                    for message in stored:
                        follower.offer(message)

        async def scenario() -> list[str]:
            sub = await Subscription.open(url, service_token())
            await sub.subscribe(str(conversation))
            await until_live(sub, url, service_token(), str(conversation))
            loop = hub.worker.get_loop()  # the hub delivers nothing more: only the burst does
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(hub.stop(), loop))
            stored = [
                await asyncio.to_thread(send_message, conversation, f"m{i}", sender_id=None)
                for i in range(hub.queue_size * 3)
            ]
            loop.call_soon_threadsafe(burst, stored)
            received = [(await sub.next_message())["content"] for _ in stored]
            with pytest.raises(TimeoutError):  # nothing twice, and no error after them
                await sub.receive(timeout=0.5)
            await sub.close()
            return received

        received = asyncio.run(scenario())
    assert received == [f"m{i}" for i in range(12)]


def test_an_expired_token_closes_the_socket(server: Server) -> None:
    # accepted thanks to the 30 s clock-skew leeway, and past it two seconds later
    token = user_token(CUSTOMER.id, expires_in=-28)
    conversation = open_conversation(server.url, user_token(CUSTOMER.id))

    async def scenario() -> tuple[int | None, str | None]:
        sub = await Subscription.open(server.url, token)
        await sub.subscribe(conversation)
        with contextlib.suppress(ConnectionClosed):
            while True:
                await sub.receive()
        return sub.socket.close_code, sub.socket.close_reason

    assert asyncio.run(scenario()) == (4403, "token expired")  # graphql-ws retries 4403


def test_an_admin_demoted_while_subscribed_stops_receiving(server: Server) -> None:
    admin = make_admin("Soon Former Admin")
    customer = make_user()
    conversation = open_conversation(server.url, user_token(customer))

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        sub = await Subscription.open(server.url, user_token(admin))
        await sub.subscribe(conversation)
        await until_live(sub, server.url, user_token(customer), conversation)
        await asyncio.to_thread(demote, admin)
        await send_over_http(server.url, user_token(customer), conversation, "not for you")
        ended = await sub.receive()
        assert (await sub.receive())["type"] == "complete"
        await sub.subscribe(conversation, "again")
        refused = await sub.receive()
        await sub.close()
        return ended, refused

    ended, refused = asyncio.run(scenario())
    assert ended["payload"]["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "not for you" not in json.dumps(ended)
    assert refused["id"] == "again"
    assert refused["payload"]["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def demote(profile: ProfileId) -> None:
    with database.connection_context():
        Profile.update(is_admin=False).where(Profile.id == profile).execute()


SUBSCRIPTIONS_PER_SOCKET = 10


def test_a_client_that_stops_reading_is_disconnected(db: Settings) -> None:
    make_admin()
    conversation = first_contact(make_user()).conversation.id
    with serve_in_process(db.replaced(ws_send_timeout_s=0.5, ws_queue_size=8)) as (url, app):

        async def scenario() -> int | None:
            sub = await Subscription.open(url, service_token(), max_queue=1)  # reads no more
            for operation in range(SUBSCRIPTIONS_PER_SOCKET):  # each message: that many frames
                await sub.subscribe(str(conversation), str(operation))
            deadline = time.monotonic() + 10
            while app.state.hub.subscriber_count < SUBSCRIPTIONS_PER_SOCKET:
                assert time.monotonic() < deadline, "the subscription never registered"
                await asyncio.sleep(0.05)
            for i in range(1000):  # up to ~40 MB of frames, more than the buffers between hold
                noise = secrets.token_urlsafe(3000)  # 4,000 characters that do not compress
                await asyncio.to_thread(send_message, conversation, noise, sender_id=None)
                if i % 10 == 0 and app.state.hub.subscriber_count == 0:
                    break  # a send waited past the timeout: the server gave up on the client
            else:
                pytest.fail("a client that stopped reading was never disconnected")
            with contextlib.suppress(ConnectionClosed):
                while True:  # what was buffered, then the close frame (or a hang: TimeoutError)
                    await asyncio.wait_for(sub.socket.recv(), GUARD_S)
            return sub.socket.close_code

        assert asyncio.run(scenario()) == 1013


@pytest.mark.parametrize(("setting", "compressed"), [(None, False), ("true", True)])
def test_websocket_compression_is_accepted_only_when_configured(
    db: Settings, tmp_path: Path, setting: str | None, compressed: bool
) -> None:
    # each compressing socket holds ~50 KiB of zlib state: off unless WS_PER_MESSAGE_DEFLATE
    variables = {"WS_PER_MESSAGE_DEFLATE": setting} if setting else {}
    make_admin()
    conversation = str(first_contact(make_user()).conversation.id)
    with running_server(db, tmp_path / "server.log", **variables) as server:

        async def scenario() -> tuple[str | None, str]:
            sub = await Subscription.open(server.url, service_token())  # offers permessage-deflate
            await sub.subscribe(conversation)
            await until_live(sub, server.url, service_token(), conversation)  # frames flowed
            extensions = sub.socket.response.headers.get("Sec-WebSocket-Extensions")
            await sub.close()
            return extensions, sub.socket.request.headers["Sec-WebSocket-Extensions"]

        accepted, offered = asyncio.run(scenario())
    assert "permessage-deflate" in offered
    assert ("permessage-deflate" in (accepted or "")) == compressed
