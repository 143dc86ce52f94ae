"""A conversation's life over the API: staff resolve, snooze and reopen it; the customer's next
message reopens it; who may do what, and the errors a client gets for what it may not."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx2 as httpx
import pytest

from tests.e2e.conftest import GraphQLClient, Server, service_token, user_token
from tests.e2e.test_inbox import subscribe_inbox
from tests.e2e.test_observability import metric
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
