"""A conversation's life over the API: staff resolve, snooze and reopen it; the customer's next
message reopens it; who may do what, and the errors a client gets for what it may not."""

from __future__ import annotations

import asyncio
import random
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx2 as httpx
import pytest

from gql.http.settings import Settings
from repo import lifecycle
from repo.conversations import find_conversation
from repo.database import database
from repo.integrity import find_count_drift
from repo.models import Conversation
from tests.e2e.conftest import (
    GraphQLClient,
    Server,
    running_server,
    service_token,
    user_token,
    wait_for,
)
from tests.e2e.test_inbox import subscribe_inbox
from tests.e2e.test_observability import metric
from tests.e2e.wsclient import Subscription, until_flowing
from tests.factories import first_contact, make_admin, make_user

pytestmark = pytest.mark.e2e

FIELDS = "id status snoozedUntil resolvedAt waitingSince admin { openConversationCount }"
RESOLVE = f"mutation ($id: UUID!) {{ resolveConversation(conversationId: $id) {{ {FIELDS} }} }}"
SNOOZE = (
    "mutation ($id: UUID!, $until: DateTime!) "
    f"{{ snoozeConversation(conversationId: $id, until: $until) {{ {FIELDS} }} }}"
)
REOPEN = f"mutation ($id: UUID!) {{ reopenConversation(conversationId: $id) {{ {FIELDS} }} }}"
SEND = (
    "mutation ($id: UUID!, $text: String!) "
    "{ sendMessage(conversationId: $id, content: $text) { id } }"
)
MINE = f"{{ adminConversation {{ {FIELDS} }} }}"
BY_ID = f"query ($id: UUID!) {{ conversation(id: $id) {{ {FIELDS} }} }}"


def in_(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


@pytest.fixture
def cast(client: GraphQLClient) -> dict[str, Any]:
    admin = make_admin()
    customer = make_user()
    conversation = str(first_contact(customer).conversation.id)
    return {
        "id": conversation,
        "admin": client.as_(user_token(admin)),
        "customer": client.as_(user_token(customer)),
        "service": client.as_(service_token()),
    }


def test_an_admin_resolves_and_the_customer_s_message_reopens_it(cast: dict[str, Any]) -> None:
    resolved = cast["admin"].data(RESOLVE, id=cast["id"])["resolveConversation"]
    assert (resolved["status"], resolved["admin"]["openConversationCount"]) == ("RESOLVED", 0)
    assert resolved["resolvedAt"] is not None

    seen = cast["customer"].data(MINE)["adminConversation"]
    assert (seen["id"], seen["status"]) == (cast["id"], "RESOLVED")  # as it is, not a new one
    assert seen["admin"]["openConversationCount"] is None  # staff only

    cast["customer"].data(SEND, id=cast["id"], text="it broke again")
    reopened = cast["service"].data(BY_ID, id=cast["id"])["conversation"]
    assert (reopened["id"], reopened["status"], reopened["resolvedAt"]) == (
        cast["id"],
        "OPEN",
        None,
    )
    assert reopened["waitingSince"] is not None
    assert reopened["admin"]["openConversationCount"] == 1


def test_staff_snooze_and_reopen_and_asking_twice_changes_nothing(cast: dict[str, Any]) -> None:
    until = in_(hours=2)
    snoozed = cast["service"].data(SNOOZE, id=cast["id"], until=until)["snoozeConversation"]
    assert snoozed["status"] == "SNOOZED"
    asked = datetime.fromisoformat(until)
    kept = datetime.fromisoformat(snoozed["snoozedUntil"])
    assert kept == asked.replace(microsecond=asked.microsecond // 1000 * 1000)  # milliseconds
    again = cast["service"].data(SNOOZE, id=cast["id"], until=until)["snoozeConversation"]
    assert again == snoozed

    first = cast["admin"].data(REOPEN, id=cast["id"])["reopenConversation"]
    second = cast["admin"].data(REOPEN, id=cast["id"])["reopenConversation"]
    assert first == second
    assert (first["status"], first["snoozedUntil"]) == ("OPEN", None)


@pytest.mark.parametrize("operation", ["resolveConversation", "reopenConversation"])
def test_a_customer_may_not_change_their_conversation_s_status(
    cast: dict[str, Any], operation: str
) -> None:
    document = RESOLVE if operation == "resolveConversation" else REOPEN
    [error] = cast["customer"].post(document, id=cast["id"])["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert operation in error["message"]


def test_an_unknown_conversation_is_not_found(cast: dict[str, Any]) -> None:
    [error] = cast["admin"].post(RESOLVE, id=str(uuid4()))["errors"]
    assert error["extensions"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    "until",
    [in_(minutes=-1), in_(days=91), "2030-01-01T09:00:00", "next tuesday"],
    ids=["past", "too far", "no time zone", "not a time"],
)
def test_a_bad_snooze_time_is_bad_user_input_and_changes_nothing(
    cast: dict[str, Any], until: str
) -> None:
    [error] = cast["admin"].post(SNOOZE, id=cast["id"], until=until)["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert cast["customer"].data(MINE)["adminConversation"]["status"] == "OPEN"


STATUS_UPDATES = "subscription { inboxUpdated { id conversation { id status } } }"


def test_the_inbox_hears_a_resolve_and_a_snoozed_conversation_wake_on_a_running_server(
    server: Server,
) -> None:
    admin = make_admin("Ivy Inbox")
    customer = make_user()
    conversation = str(first_contact(customer).conversation.id)
    staff = {"authorization": f"Bearer {user_token(admin)}"}

    def mutate(query: str, **variables: Any) -> None:
        body = httpx.post(
            server.url, json={"query": query, "variables": variables}, headers=staff
        ).json()
        assert "errors" not in body, body

    async def scenario() -> list[str]:
        sub = await subscribe_inbox(server.url, user_token(admin), STATUS_UPDATES)
        heard: list[str] = []

        async def next_status() -> str:
            while True:
                item = (await sub.receive())["payload"]["data"]["inboxUpdated"]
                if item["id"] == conversation:
                    return str(item["conversation"]["status"])

        await asyncio.to_thread(mutate, RESOLVE, id=conversation)
        heard.append(await next_status())
        await asyncio.to_thread(mutate, SNOOZE, id=conversation, until=in_(seconds=1.5))
        heard.append(await next_status())
        heard.append(await asyncio.wait_for(next_status(), timeout=10))  # wakes by itself
        await sub.close()
        return heard

    assert asyncio.run(scenario()) == ["RESOLVED", "SNOOZED", "OPEN"]


def test_metrics_count_resolves_and_reopens_and_read_the_statuses(
    cast: dict[str, Any], client: GraphQLClient
) -> None:
    def scrape() -> str:
        return str(client.http.get("/metrics").text)

    before = scrape()
    cast["admin"].data(RESOLVE, id=cast["id"])
    cast["admin"].data(RESOLVE, id=cast["id"])  # no change: not counted again
    resolved = scrape()
    cast["customer"].data(SEND, id=cast["id"], text="still there?")
    reopened = scrape()

    def grew(text: str, name: str, **labels: str) -> float:
        return metric(text, name, **labels) - metric(before, name, **labels)

    assert grew(resolved, "helpline_conversations_resolved_total", by="admin") == 1
    assert metric(resolved, "helpline_conversations", status="RESOLVED") == 1
    assert metric(resolved, "helpline_oldest_waiting_seconds") == 0  # nobody waits
    assert grew(reopened, "helpline_conversations_reopened_total", by="customer") == 1
    assert metric(reopened, "helpline_conversations", status="OPEN") == 1
    assert metric(reopened, "helpline_oldest_waiting_seconds") >= 0
    assert grew(reopened, "helpline_response_seconds_count") == 0  # she waits: no answer yet
    cast["customer"].data(SEND, id=cast["id"], text="hello?")  # the wait goes on
    cast["admin"].data(SEND, id=cast["id"], text="here!")  # and ends
    cast["admin"].data(SEND, id=cast["id"], text="anything else?")  # nobody was waiting
    answered = scrape()
    assert grew(answered, "helpline_response_seconds_count") == 1  # one wait, one answer
    assert metric(answered, "helpline_oldest_waiting_seconds") == 0


INBOX = """query ($status: [ConversationStatus!], $order: InboxOrder!, $after: String) {
  inbox(first: 2, status: $status, orderBy: $order, after: $after) {
    edges { node { id conversation { status waitingSince } } }
    pageInfo { hasNextPage endCursor } } }"""


def test_the_inbox_filters_by_status_and_puts_the_longest_waiting_customer_first(
    client: GraphQLClient,
) -> None:
    admin = make_admin()
    staff = client.as_(user_token(admin))
    chats = [first_contact(make_user()) for _ in range(4)]
    ids = [str(c.conversation.id) for c in chats]
    for index in (2, 0, 3):  # customers write in this order: 2 waits longest, then 0, then 3
        client.as_(user_token(chats[index].conversation.customer.id)).data(
            SEND, id=ids[index], text="anyone?"
        )
    staff.data(RESOLVE, id=ids[3])  # resolved, its customer still waiting

    def page(after: str | None = None, **filters: Any) -> dict[str, Any]:
        variables = {"order": "WAITING_LONGEST", "after": after, **filters}
        return dict(staff.data(INBOX, **variables)["inbox"])

    first, second = page(), None
    second = page(first["pageInfo"]["endCursor"])
    ordered = [e["node"]["id"] for e in first["edges"] + second["edges"]]
    assert ordered[:3] == [ids[2], ids[0], ids[3]]  # waiting since, oldest first
    assert ordered[3] == ids[1]  # nobody waits in it: after them
    assert not second["pageInfo"]["hasNextPage"]

    resolved = page(status=["RESOLVED"])
    assert [e["node"]["id"] for e in resolved["edges"]] == [ids[3]]
    open_ones = page(status=["OPEN", "SNOOZED"])["edges"]
    assert {e["node"]["conversation"]["status"] for e in open_ones} == {"OPEN"}

    [error] = staff.post(INBOX, order="LATEST_ACTIVITY", after=first["pageInfo"]["endCursor"])[
        "errors"
    ]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "another order" in error["message"]


def test_a_filtered_inbox_subscription_hears_the_change_that_takes_an_item_out(
    server: Server,
) -> None:
    admin = make_admin("Ivy Inbox")
    conversation = str(first_contact(make_user()).conversation.id)
    staff = {"authorization": f"Bearer {user_token(admin)}"}

    async def scenario() -> list[str]:
        sub = await subscribe_inbox(
            server.url,
            user_token(admin),
            "subscription { inboxUpdated(status: [OPEN]) { id conversation { id status } } }",
        )
        heard: list[str] = []

        async def next_status() -> str:
            while True:
                item = (await sub.receive())["payload"]["data"]["inboxUpdated"]
                if item["id"] == conversation:
                    return str(item["conversation"]["status"])

        def mutate(query: str) -> None:
            body = httpx.post(
                server.url, json={"query": query, "variables": {"id": conversation}}, headers=staff
            ).json()
            assert "errors" not in body, body

        await asyncio.to_thread(mutate, RESOLVE)
        heard.append(await next_status())  # leaving the filter: heard once
        await asyncio.to_thread(mutate, RESOLVE)  # no change, nothing to hear
        await asyncio.to_thread(mutate, REOPEN)
        heard.append(await next_status())
        await sub.close()
        return heard

    assert asyncio.run(scenario()) == ["RESOLVED", "OPEN"]


UPDATED = """subscription ($id: UUID!) {
  conversationUpdated(conversationId: $id) { id status admin { id } } }"""


def test_the_customer_hears_their_conversation_change_status_and_nothing_else(
    server: Server,
) -> None:
    admin = make_admin()
    customer = make_user()
    conversation = str(first_contact(customer).conversation.id)

    def as_(user: UUID, query: str, **variables: Any) -> None:
        headers = {"authorization": f"Bearer {user_token(user)}"}
        body = httpx.post(
            server.url,
            json={"query": query, "variables": {"id": conversation, **variables}},
            headers=headers,
        ).json()
        assert "errors" not in body, body

    async def scenario() -> list[Any]:
        sub = await Subscription.open(server.url, user_token(customer))
        await sub.subscribe(conversation, query=UPDATED)
        snoozes = iter(range(1, 1000))  # each snooze to a new time is a change: a probe

        async def probe() -> None:
            await asyncio.to_thread(as_, admin, SNOOZE, until=in_(hours=next(snoozes)))

        await until_flowing(sub, probe, is_probe=lambda frame: frame["type"] == "next")
        heard: list[Any] = []
        await asyncio.to_thread(as_, admin, RESOLVE)
        heard.append((await sub.receive())["payload"]["data"]["conversationUpdated"]["status"])
        await asyncio.to_thread(as_, admin, SEND, text="anything else?")  # no status change
        try:
            heard.append(await sub.receive(timeout=0.5))
        except TimeoutError:
            heard.append("nothing")
        await asyncio.to_thread(as_, customer, SEND, text="yes, one more")
        heard.append((await sub.receive())["payload"]["data"]["conversationUpdated"]["status"])
        await sub.close()
        return heard

    assert asyncio.run(scenario()) == ["RESOLVED", "nothing", "OPEN"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # authorization: one backend
def test_someone_else_s_conversation_updates_are_forbidden(server: Server) -> None:
    make_admin()
    conversation = str(first_contact(make_user()).conversation.id)

    async def scenario() -> dict[str, Any]:
        sub = await Subscription.open(server.url, user_token(make_user()))
        await sub.subscribe(conversation, query=UPDATED)
        refused = await sub.receive()
        await sub.close()
        return refused

    refused = asyncio.run(scenario())
    assert refused["payload"]["errors"][0]["extensions"]["code"] == "FORBIDDEN"


OPEN_CHAT = "mutation { adminConversation { conversation { id } } }"
ASSIGN = """mutation ($id: UUID!, $admin: UUID!) {
  assignConversation(conversationId: $id, adminId: $admin) { id } }"""


def test_a_mixed_run_keeps_counts_exact_and_wakes_each_snoozed_conversation_once(
    db: Settings, tmp_path: Path
) -> None:
    """First contacts, resolves, snoozes, reopens, customers' messages and hand-overs racing
    through two server processes (PostgreSQL; SQLite serves one), while snoozed conversations
    wake: every admin's counts still equal their conversations, and each woke once."""
    workers = 1 if db.database.is_sqlite else 2
    with running_server(db, tmp_path / "server.log", workers=workers) as server:
        staff = [str(make_admin(f"Admin {i}")) for i in range(3)]
        customers = {make_user(): None for _ in range(14)}

        def call(user: UUID | None, query: str, **variables: Any) -> dict[str, Any]:
            token = service_token() if user is None else user_token(user)
            body = httpx.post(
                server.url,
                json={"query": query, "variables": variables},
                headers={"authorization": f"Bearer {token}"},
                timeout=30,
            ).json()
            assert "errors" not in body, body
            return dict(body["data"])

        with ThreadPoolExecutor(max_workers=8) as pool:
            opened = pool.map(lambda c: call(c, OPEN_CHAT)["adminConversation"], customers)
            chats = [(c, o["conversation"]["id"]) for c, o in zip(customers, opened, strict=True)]
        churned, sleepers = chats[:8], chats[8:]
        newcomers = iter([make_user() for _ in range(60)])
        rng = random.Random(27)
        jobs = []
        for _ in range(60):
            customer, chat = rng.choice(churned)
            handed_to = rng.choice(staff)
            jobs.append(
                rng.choice(
                    [
                        lambda chat=chat: call(None, RESOLVE, id=chat),
                        lambda chat=chat: call(None, REOPEN, id=chat),
                        lambda chat=chat: call(None, SNOOZE, id=chat, until=in_(hours=1)),
                        lambda chat=chat, c=customer: call(c, SEND, id=chat, text="still here"),
                        lambda chat=chat, to=handed_to: call(None, ASSIGN, id=chat, admin=to),
                        lambda: call(next(newcomers), OPEN_CHAT),  # a first contact meanwhile
                    ]
                )
            )
        for _, chat in sleepers:  # to wake by themselves while the churn runs
            jobs.append(lambda chat=chat: call(None, SNOOZE, id=chat, until=in_(seconds=1.5)))
        rng.shuffle(jobs)
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda job: job(), jobs))

        def woken() -> float:
            text = httpx.get(f"{server.base}/metrics", timeout=10).text
            return metric(text, "helpline_conversations_reopened_total", by="snooze")

        wait_for(lambda: woken() >= len(sleepers), "the snoozed conversations to wake")
        time.sleep(2.5)  # a pass of each process's clock more: none may wake one again
        assert woken() == len(sleepers)  # each once, though two processes looked
        with database.connection_context():
            assert find_count_drift() == []  # every change moved its admin's open count once


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the clock: one backend
def test_a_server_that_was_down_wakes_what_it_missed_when_it_starts(
    db: Settings, tmp_path: Path
) -> None:
    make_admin()
    chat = first_contact(make_user()).conversation
    lifecycle.snooze_conversation(chat.id, datetime.now(UTC) + timedelta(hours=1))
    with database.connection_context():  # its time came while no server ran
        Conversation.update(snoozed_until=datetime.now(UTC) - timedelta(hours=1)).execute()

    with running_server(db, tmp_path / "server.log"):

        def woken() -> bool:
            found = find_conversation(chat.id)
            return found is not None and found.status == "OPEN"

        wait_for(woken, "the snoozed conversation to wake at start-up", timeout_s=10)
