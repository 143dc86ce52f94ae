"""The per-process hub: notifications that overtake each other still deliver all, in order."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from uuid import UUID

import pytest

from gql.graphql.subscriptions import follow, live_messages
from gql.realtime.hub import Hub
from repo.events import MessageStored
from repo.ids import ConversationId, ProfileId
from repo.inbox import InboxItem, inbox_page
from repo.messages import newest_position, send_message
from repo.views import MessageView
from tests.conftest import QueryLog
from tests.factories import first_contact, make_admin, make_user

pytestmark = [pytest.mark.usefixtures("db"), pytest.mark.timeout(30)]


def test_out_of_order_notifications_lose_nothing_when_the_hub_is_unordered() -> None:
    make_admin()
    conversation = first_contact(make_user()).conversation.id
    start = newest_position(conversation)
    first = send_message(conversation, "A", sender_id=None)
    second = send_message(conversation, "B", sender_id=None)

    async def scenario() -> list[str]:
        hub = Hub(queue_size=16, ordered=False)  # SQLite's after-commit hand-offs
        hub.start()
        try:
            with hub.follow(conversation) as subscriber:
                hub.take(MessageStored(conversation, second.id))  # B's hand-off overtakes A's
                hub.take(MessageStored(conversation, first.id))
                messages = follow(subscriber, conversation, start)
                got = [(await anext(messages)).content for _ in range(2)]
                return got
        finally:
            await hub.stop()

    assert asyncio.run(scenario()) == ["A", "B"]


def test_a_message_committed_while_a_subscription_registers_is_caught_up_once() -> None:
    make_admin()
    conversation = first_contact(make_user()).conversation.id

    def position_then_a_commit(conversation_id: ConversationId) -> tuple[datetime, UUID] | None:
        position = newest_position(conversation_id)  # where the subscription starts ...
        send_message(conversation_id, "in between", sender_id=None)  # ... unheard by the hub
        return position

    async def scenario() -> list[str]:
        hub = Hub(queue_size=16)
        hub.start()
        try:
            messages = live_messages(hub, conversation, position=position_then_a_commit)
            got = [(await anext(messages)).content]
            after = send_message(conversation, "after", sender_id=None)
            hub.take(MessageStored(conversation, after.id))
            got.append((await anext(messages)).content)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(messages), 0.3)  # nothing twice
            return got
        finally:
            await hub.stop()

    assert asyncio.run(scenario()) == ["in between", "after"]


def test_a_batch_costs_the_same_few_queries_however_many_readers_and_events(
    queries: QueryLog,
) -> None:
    admins = [make_admin(f"Admin {i}") for i in range(3)]
    customers = [make_user() for _ in range(4)]
    conversations = [first_contact(customer).conversation.id for customer in customers]
    stored = [
        send_message(conversation, f"m{i}", sender_id=ProfileId(customer))
        for i in range(3)
        for customer, conversation in zip(customers, conversations, strict=True)
    ]

    async def scenario() -> tuple[list[int], dict[ConversationId, int]]:
        hub = Hub(queue_size=64)
        with contextlib.ExitStack() as stack:
            followers = [
                stack.enter_context(hub.follow(c, admin_id=admins[0])) for c in conversations
            ]
            readers = [stack.enter_context(hub.read_inbox(reader_id=a, admin_id=a)) for a in admins]
            for message in stored:  # all pending when the hub starts: one batch
                hub.take(MessageStored(message.conversation_id, message.id))
            queries.statements.clear()
            hub.start()
            try:
                for follower in followers:
                    for _ in range(3):
                        assert isinstance(await follower.next(), MessageView)
                for message in stored[-len(conversations) :]:  # a second batch, unread yet
                    hub.take(MessageStored(message.conversation_id, message.id))
                for follower in followers:
                    assert isinstance(await follower.next(), MessageView)
                latest: dict[ConversationId, int] = {}
                while len(latest) < len(conversations):
                    item = await readers[1].next()
                    assert isinstance(item, InboxItem)
                    latest[item.conversation.id] = item.unread_count
                return [len(r.pending) for r in readers], latest
            finally:
                await hub.stop()

    pending, latest = asyncio.run(scenario())
    # per batch: the messages, the conversations, their last messages, unread counts, and the
    # admin re-check; two batches
    assert len(queries.statements) == 2 * 5, queries.statements
    assert pending == [len(conversations), 0, len(conversations)]  # one per conversation
    page = inbox_page(admins[1], first=len(conversations)).items
    assert latest == {item.conversation.id: item.unread_count for item in page}
