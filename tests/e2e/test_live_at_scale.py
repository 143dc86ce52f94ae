"""Live delivery under load, against a real server: many subscribers, bursts from two senders."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from gql.http.settings import Settings
from repo.ids import ConversationId
from repo.messages import messages_after
from tests.e2e.conftest import running_server, service_token, user_token
from tests.e2e.test_inbox import subscribe_inbox
from tests.e2e.test_subscriptions import SEND, post
from tests.e2e.wsclient import Subscription
from tests.factories import first_contact, make_admin, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
INBOX = """query { inbox(first: 100) { edges { node { id unreadCount
  lastMessage { content } } } } }"""
INBOX_UPDATES = "subscription { inboxUpdated { id unreadCount lastMessage { content } } }"


def send_from_two_senders(url: str, sends: list[tuple[str, str, str]]) -> None:
    """(token, conversation, text) each, split between two concurrent senders over HTTP."""

    def sender(part: list[tuple[str, str, str]]) -> None:
        for token, conversation, text in part:
            post(url, SEND, token, id=conversation, text=text)

    threads = [threading.Thread(target=sender, args=(sends[i::2],)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


async def collect(sub: Subscription, frames: list[dict[str, Any]]) -> None:
    """Keep reading, as a client does, until the socket closes or the task is cancelled."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            frame = json.loads(await sub.socket.recv())
            if frame["type"] == "ping":
                await sub.socket.send(json.dumps({"type": "pong"}))
                continue
            frames.append(frame)


def test_hundreds_of_subscribers_get_a_two_sender_burst_in_order_exactly_once(
    postgres: Settings, tmp_path: Path
) -> None:
    make_admin()
    conversations = [str(first_contact(make_user()).conversation.id) for _ in range(20)]
    followers, per_conversation = 200, 8
    # a queue this short overflows in a burst: the followers catch up instead of ending
    with running_server(postgres, tmp_path / "server.log", workers=2, WS_QUEUE_SIZE="1") as server:

        async def scenario() -> list[list[dict[str, Any]]]:
            subs = await asyncio.gather(
                *(  # at once, from many addresses, as widgets after a deploy
                    Subscription.open(server.url, service_token(), source=f"127.0.3.{i % 50 + 1}")
                    for i in range(followers)
                )
            )
            frames: list[list[dict[str, Any]]] = [[] for _ in subs]
            pairs = zip(subs, frames, strict=True)
            readers = [asyncio.create_task(collect(s, f)) for s, f in pairs]
            for i, sub in enumerate(subs):
                await sub.subscribe(conversations[i % len(conversations)])
            await until_every_follower_hears_a_probe(server.url, conversations, frames)
            sends = [
                (service_token(), conversation, f"{conversation}:{n}")
                for conversation in conversations  # both senders on one conversation at a time
                for n in range(per_conversation)
            ]
            await asyncio.to_thread(send_from_two_senders, server.url, sends)
            deadline = asyncio.get_running_loop().time() + 30
            while any(len(burst_of(f)) < per_conversation for f in frames):
                assert asyncio.get_running_loop().time() < deadline, "frames missing"
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # anything twice would arrive by now
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*(s.close() for s in subs))
            return frames

        frames = asyncio.run(scenario())
    committed = {
        c: [m.content for m in messages_after(ConversationId(c), None) if ":" in m.content]
        for c in conversations
    }
    for i, received in enumerate(frames):
        assert all(f["type"] == "next" and "errors" not in f["payload"] for f in received)
        assert burst_of(received) == committed[conversations[i % len(conversations)]]


def burst_of(frames: list[dict[str, Any]]) -> list[str]:
    contents = ((f["payload"].get("data") or {}).get("messageAdded") or {} for f in frames)
    return [c["content"] for c in contents if ":" in c.get("content", "")]


async def until_every_follower_hears_a_probe(
    url: str, conversations: list[str], frames: list[list[dict[str, Any]]]
) -> None:
    """A subscription has no ack: probe each conversation until all its followers hear one."""
    for _ in range(50):
        if all(frames_of_follower for frames_of_follower in frames):
            return
        deaf = {conversations[i % len(conversations)] for i, f in enumerate(frames) if not f}
        for conversation in deaf:
            await asyncio.to_thread(post, url, SEND, service_token(), id=conversation, text="probe")
        await asyncio.sleep(0.2)
    pytest.fail("some subscriptions never went live")


def test_an_inbox_reader_who_keeps_reading_through_a_burst_ends_with_the_right_counts(
    postgres: Settings, tmp_path: Path
) -> None:
    admin = make_admin("Console Admin")
    customers = [make_user() for _ in range(30)]
    conversations = [str(first_contact(c).conversation.id) for c in customers]
    # a queue this short does not bound an inbox reader: it holds one update per conversation
    with running_server(postgres, tmp_path / "server.log", workers=2, WS_QUEUE_SIZE="4") as server:

        async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any]]:
            sub = await subscribe_inbox(server.url, user_token(admin), INBOX_UPDATES)
            frames: list[dict[str, Any]] = []
            reader = asyncio.create_task(collect(sub, frames))
            sends = [
                (user_token(customer), conversation, f"{n}")
                for n in range(8)
                for customer, conversation in zip(customers, conversations, strict=True)
            ]
            await asyncio.to_thread(send_from_two_senders, server.url, sends)
            expected = {
                edge["node"]["id"]: edge["node"]
                for edge in post(server.url, INBOX, user_token(admin))["inbox"]["edges"]
                if edge["node"]["id"] in conversations
            }
            deadline = asyncio.get_running_loop().time() + 30
            while latest_of(frames) != expected and not ended(frames):
                assert asyncio.get_running_loop().time() < deadline, "the inbox never caught up"
                await asyncio.sleep(0.1)
            reader.cancel()
            await sub.close()
            return frames, expected

        frames, expected = asyncio.run(scenario())
    assert not ended(frames)
    assert latest_of(frames) == expected
    assert all(item["unreadCount"] >= 8 for item in expected.values())  # all unread


def latest_of(frames: list[dict[str, Any]]) -> dict[str, Any]:
    latest: dict[str, Any] = {}
    for frame in frames:
        if item := (frame["payload"].get("data") or {}).get("inboxUpdated"):
            latest[item["id"]] = item
    return {k: v for k, v in latest.items() if v["lastMessage"]["content"] != "probe"}


def ended(frames: list[dict[str, Any]]) -> bool:
    return any(f["type"] != "next" or "errors" in f["payload"] for f in frames)
