"""The per-process hub: notifications that overtake each other still deliver all, in order."""

from __future__ import annotations

import asyncio
from datetime import datetime
from uuid import UUID

import pytest

from gql.graphql.live import Hub, follow, live_messages
from repo.events import MessageStored
from repo.ids import ConversationId
from repo.messages import newest_position, send_message
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
            with hub.subscribe(conversation) as subscriber:
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
