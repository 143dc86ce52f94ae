"""A real server whose pool goes through PgBouncer in transaction mode, its listener direct."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest

from gql.http.settings import Settings
from tests.e2e.conftest import Server, running_server, user_token
from tests.e2e.test_subscriptions import open_conversation, post, send_over_http, until_live
from tests.e2e.wsclient import Subscription
from tests.factories import count_rows, make_legacy_user
from tests.pgbouncer import PgBouncer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(120),
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]
OPEN = "mutation { adminConversation { created conversation { id } } }"
SEND = (
    "mutation ($id: UUID!, $text: String!) "
    "{ sendMessage(conversationId: $id, content: $text) { createdAt } }"
)
READ = "{ adminConversation { createdAt lastMessageAt } }"


@pytest.fixture
def bounced_server(db: Settings, pgbouncer: PgBouncer, tmp_path: Path) -> Iterator[Server]:
    """`helpline serve` with DATABASE_URL through PgBouncer and LISTEN_DATABASE_URL direct."""
    with running_server(
        db,
        tmp_path / "server.log",
        DATABASE_URL=pgbouncer.url(db.database.database_url),
        LISTEN_DATABASE_URL=db.database.database_url,
    ) as server:
        yield server


def test_through_pgbouncer_first_calls_make_one_conversation_and_times_are_utc(
    bounced_server: Server,
) -> None:
    token = user_token(make_legacy_user())

    with ThreadPoolExecutor(max_workers=12) as pool:
        opened = list(pool.map(lambda _: post(bounced_server.url, OPEN, token), range(12)))
    conversation = opened[0]["adminConversation"]["conversation"]["id"]
    sent = post(bounced_server.url, SEND, token, id=conversation, text="Hello?")
    read = post(bounced_server.url, READ, token)["adminConversation"]

    assert {o["adminConversation"]["conversation"]["id"] for o in opened} == {conversation}
    assert sum(o["adminConversation"]["created"] for o in opened) == 1
    assert count_rows("conversations") == 1
    stamps = [sent["sendMessage"]["createdAt"], read["createdAt"], read["lastMessageAt"]]
    assert all(datetime.fromisoformat(s).utcoffset().total_seconds() == 0 for s in stamps)
    assert read["lastMessageAt"] == sent["sendMessage"]["createdAt"]


def test_a_subscriber_hears_messages_stored_through_pgbouncer(bounced_server: Server) -> None:
    token = user_token(make_legacy_user())
    conversation = open_conversation(bounced_server.url, token)

    async def scenario() -> list[str]:
        sub = await Subscription.open(bounced_server.url, token)
        await sub.subscribe(conversation)
        await until_live(sub, bounced_server.url, token, conversation)
        for text in ("one", "two", "three"):
            await send_over_http(bounced_server.url, token, conversation, text)
        received = [(await sub.next_message())["content"] for _ in range(3)]
        with pytest.raises(TimeoutError):
            await sub.next_message(timeout=0.5)  # nothing twice
        await sub.close()
        return received

    assert asyncio.run(scenario()) == ["one", "two", "three"]
