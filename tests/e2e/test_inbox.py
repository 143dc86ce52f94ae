"""The admins' inbox: newest activity first, last message, unread counts, markRead, live updates."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from gql.http.settings import Settings
from repo.database import database
from repo.ids import ProfileId
from repo.messages import send_message
from repo.models import Profile
from tests.e2e.conftest import GraphQLClient, Server, running_server, user_token
from tests.e2e.test_subscriptions import (
    demote,
    open_conversation,
    send_over_http,
    terminate_listener,
)
from tests.e2e.wsclient import Subscription, until_flowing
from tests.factories import first_contact, make_admin, make_user

INBOX = """query ($first: Int!, $after: String) { inbox(first: $first, after: $after) {
  edges { cursor node { id unreadCount conversation { id customer { name } }
                        lastMessage { content } } }
  pageInfo { hasNextPage endCursor } } }"""
INBOX_UPDATES = (
    "subscription { inboxUpdated { id conversation { id customer { id } } "
    "lastMessage { content } } }"
)
MARK_READ = "mutation ($id: UUID!) { markRead(conversationId: $id) { unreadCount } }"


def test_the_inbox_orders_by_activity_and_counts_unread_per_admin(client: GraphQLClient) -> None:
    admin, other_admin = make_admin("Ada Admin"), make_admin("Bea Backup")
    customers = [make_user(full_name=f"Customer {i}") for i in range(3)]
    conversations = []
    for customer in customers:  # each conversation's activity a millisecond (SQLite's tick) later
        conversations.append(first_contact(customer).conversation.id)
        time.sleep(0.002)
    send_message(conversations[0], "first is now newest", sender_id=ProfileId(customers[0]))
    send_message(conversations[0], "and has two unread", sender_id=ProfileId(customers[0]))
    ada = client.as_(user_token(admin))

    page = ada.data(INBOX, first=2)["inbox"]
    rest = ada.data(INBOX, first=2, after=page["pageInfo"]["endCursor"])["inbox"]

    names = [e["node"]["conversation"]["customer"]["name"] for e in page["edges"] + rest["edges"]]
    assert names == ["Customer 0", "Customer 2", "Customer 1"]
    items = [e["node"] for e in page["edges"] + rest["edges"]]
    assert all(item["id"] == item["conversation"]["id"] for item in items)  # a cache key
    top = page["edges"][0]["node"]
    assert top["lastMessage"] == {"content": "and has two unread"}
    assert top["unreadCount"] == 2  # the welcome message is Ada's own
    assert (page["pageInfo"]["hasNextPage"], rest["pageInfo"]["hasNextPage"]) == (True, False)

    assert ada.data(MARK_READ, id=str(conversations[0])) == {"markRead": {"unreadCount": 0}}
    assert ada.data(INBOX, first=1)["inbox"]["edges"][0]["node"]["unreadCount"] == 0
    bea = client.as_(user_token(other_admin)).data(INBOX, first=1)["inbox"]["edges"][0]["node"]
    assert bea["unreadCount"] == 3  # Bea has read nothing, and the welcome was Ada's


def test_only_staff_see_the_inbox_and_only_admins_mark_read(client: GraphQLClient) -> None:
    make_admin()
    customer = make_user()
    conversation = first_contact(customer).conversation.id
    as_customer = client.as_(user_token(customer))
    refusals = [
        as_customer.error(INBOX, first=5),
        as_customer.error(MARK_READ, id=str(conversation)),
    ]
    assert [(e["extensions"]["code"], e["message"]) for e in refusals] == [
        ("FORBIDDEN", "inbox is for admins and operators"),
        ("FORBIDDEN", "markRead is for admins and operators"),
    ]
    assert client.error(MARK_READ, id=str(conversation))["extensions"]["code"] == "FORBIDDEN"
    assert len(client.data(INBOX, first=5)["inbox"]["edges"]) == 1  # service may read it


def test_a_customer_subscribing_to_the_inbox_is_told_it_is_for_staff(server: Server) -> None:
    async def scenario() -> dict[str, Any]:
        sub = await Subscription.open(server.url, user_token(make_user()))
        await sub.socket.send(
            json.dumps({"id": "i", "type": "subscribe", "payload": {"query": INBOX_UPDATES}})
        )
        refused = await sub.receive()
        await sub.close()
        return refused

    refused = asyncio.run(scenario())
    assert refused["type"] == "next", refused  # an execution error, then complete
    errors = refused["payload"]["errors"]
    assert [(e["extensions"]["code"], e["message"]) for e in errors] == [
        ("FORBIDDEN", "inboxUpdated is for admins and operators")
    ]


def test_inbox_updates_arrive_live_and_admins_are_online_while_connected(
    server: Server,
) -> None:
    admin = make_admin("Ivy Inbox")
    customer = make_user(full_name="Live Customer")
    conversation = str(first_contact(customer).conversation.id)
    query = (
        "subscription { inboxUpdated { unreadCount lastMessage { content } "
        "conversation { id messages(first: 1) { edges { node { content } } } } } }"
    )

    def online() -> bool:
        with database.connection_context():
            return bool(Profile.get_by_id(admin).is_online)

    async def scenario() -> tuple[list[dict[str, Any]], bool, bool]:
        sub = await subscribe_inbox(server.url, user_token(admin), query)
        is_online = await asyncio.to_thread(online)
        updates: list[dict[str, Any]] = []
        for text in ["hello?", "anyone there?"]:  # through the server: SQLite is one process
            await send_over_http(server.url, user_token(customer), conversation, text)
        while len(updates) < 2:
            message = await sub.receive()
            assert message["type"] == "next", message
            updates.append(message["payload"]["data"]["inboxUpdated"])
        await sub.close()
        deadline = time.monotonic() + 10
        while (still := await asyncio.to_thread(online)) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # until the server has heard of the close, or not at all
        return updates, is_online, still

    updates, online_while_connected, online_after = asyncio.run(scenario())
    assert [u["lastMessage"]["content"] for u in updates][-1] == "anyone there?"
    assert updates[-1]["conversation"]["id"] == conversation
    newest = updates[-1]["conversation"]["messages"]["edges"][0]["node"]  # loaded off the loop
    assert newest == {"content": "anyone there?"}
    assert updates[-1]["unreadCount"] == 3  # the demo admin's welcome and two new messages
    assert (online_while_connected, online_after) == (True, False)


def test_presence_spans_processes_and_a_killed_process_s_admins_go_offline(
    postgres: Settings, tmp_path: Path
) -> None:
    admin = make_admin("Ada On Two Workers")
    beat = {"PRESENCE_HEARTBEAT_SECONDS": "1"}  # rows of a silent process expire after 3 s

    def online() -> bool:
        with database.connection_context():
            return bool(Profile.get_by_id(admin).is_online)

    async def until(expected: bool) -> None:
        deadline = time.monotonic() + 10
        while await asyncio.to_thread(online) != expected:
            assert time.monotonic() < deadline, f"is_online never became {expected}"
            await asyncio.sleep(0.1)

    with (
        running_server(postgres, tmp_path / "a.log", **beat) as a,
        running_server(postgres, tmp_path / "b.log", **beat) as b,
    ):

        async def scenario() -> tuple[bool, bool]:
            on_a = await Subscription.open(a.url, user_token(admin))
            on_b = await Subscription.open(b.url, user_token(admin))
            await on_a.close()
            await asyncio.sleep(2.0)  # heartbeats go on: b's row stays fresh
            still_online_on_b = await asyncio.to_thread(online)
            os.kill(b.pid, signal.SIGKILL)  # b cannot say goodbye; its row goes stale
            await until(False)
            await on_b.socket.close()
            on_a_again = await Subscription.open(a.url, user_token(admin))
            back_online = await asyncio.to_thread(online)
            await on_a_again.close()
            await until(False)
            return still_online_on_b, back_online

        assert asyncio.run(scenario()) == (True, True)


async def subscribe_inbox(url: str, token: str, query: str = INBOX_UPDATES) -> Subscription:
    """Subscribe to inboxUpdated and return once updates flow (there is no ack for it).

    Probes go to a conversation of their own until one is pushed; stragglers are drained.
    """
    prober = make_user(full_name="Inbox Prober")
    probe_token = user_token(prober)
    probed = await asyncio.to_thread(open_conversation, url, probe_token)
    sub = await Subscription.open(url, token)
    await sub.socket.send(
        json.dumps({"id": "inbox", "type": "subscribe", "payload": {"query": query}})
    )
    await until_flowing(
        sub,
        lambda: send_over_http(url, probe_token, probed, "probe"),
        is_probe=lambda frame: frame["type"] == "next",
    )
    return sub


def test_a_new_conversation_reaches_the_inbox_with_its_welcome_message(server: Server) -> None:
    admin, newcomer = make_admin("Ivy Inbox"), make_user(full_name="First Contact")

    async def scenario() -> dict[str, Any]:
        sub = await subscribe_inbox(server.url, user_token(admin))
        await asyncio.to_thread(open_conversation, server.url, user_token(newcomer))
        update = await sub.receive()
        await sub.close()
        return update

    update = asyncio.run(scenario())
    assert update["type"] == "next", update
    item = update["payload"]["data"]["inboxUpdated"]
    assert item["conversation"]["customer"]["id"] == str(newcomer)
    assert item["id"] == item["conversation"]["id"]  # the same cache key as the inbox query's
    assert item["lastMessage"] == {"content": "Hello from e2e"}  # the server's welcome message


def test_the_inbox_subscription_asks_to_resubscribe_after_the_listener_drops(
    postgres: Settings, postgres_server: Server
) -> None:
    admin = make_admin()

    async def scenario() -> dict[str, Any]:
        sub = await subscribe_inbox(postgres_server.url, user_token(admin))
        assert await asyncio.to_thread(terminate_listener, postgres) == 1
        ended = await sub.receive()  # once the listener is back, it cannot replay the gap
        await sub.close()
        return ended

    ended = asyncio.run(scenario())
    assert ended["type"] == "next", ended
    assert ended["payload"]["errors"][0]["extensions"]["code"] == "RESUBSCRIBE"


def test_a_demoted_admin_s_inbox_subscription_ends(server: Server) -> None:
    admin, customer = make_admin("Soon Former Admin"), make_user()
    conversation = open_conversation(server.url, user_token(customer))

    async def scenario() -> dict[str, Any]:
        sub = await subscribe_inbox(server.url, user_token(admin))
        await asyncio.to_thread(demote, admin)
        await send_over_http(server.url, user_token(customer), conversation, "private")
        ended = await sub.receive()
        await sub.close()
        return ended

    ended = asyncio.run(scenario())
    assert ended["payload"]["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "private" not in json.dumps(ended)
