"""A support team over the API: balanced first contacts across server processes, online admins
first, each admin's own queue, and the balanced count visible to staff only."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx2 as httpx
import pytest

from gql.http.settings import Settings
from repo.database import database
from repo.models import Conversation, Profile
from tests.e2e.conftest import GraphQLClient, Server, running_server, user_token
from tests.e2e.test_observability import metric
from tests.e2e.test_subscriptions import send_over_http
from tests.e2e.wsclient import Subscription, until_flowing
from tests.factories import first_contact, make_admin, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

OPEN = "mutation { adminConversation { conversation { id admin { id } } } }"
COUNTS = """query ($c: UUID!) { adminConversation(customerId: $c) {
  admin { id assignedConversationCount } customer { assignedConversationCount } } }"""
MY_INBOX = """query ($mine: Boolean!) { inbox(first: 50, assignedToMe: $mine) {
  edges { node { conversation { id admin { id } } } } } }"""


def admins_in_database() -> list[UUID]:
    with database.connection_context():
        return [p for (p,) in Profile.select(Profile.id).where(Profile.is_admin).tuples()]


def per_admin() -> Counter[UUID]:
    with database.connection_context():
        return Counter(a for (a,) in Conversation.select(Conversation.admin).tuples())


def test_first_contacts_racing_through_two_processes_stay_balanced(
    postgres: Settings, tmp_path: Path
) -> None:
    with running_server(postgres, tmp_path / "server.log", workers=2) as server:
        for i in range(3):
            make_admin(f"Admin {i}")
        admins = admins_in_database()  # the demo data's admin too
        before = per_admin()
        assert all(before[a] == before[admins[0]] for a in admins)  # level to start with
        customers = [make_user() for _ in range(24)]

        def open_chat(customer: UUID) -> int:
            response = httpx.post(
                server.url,
                json={"query": OPEN},
                headers={"authorization": f"Bearer {user_token(customer)}"},
                timeout=30,
            )
            assert "errors" not in response.json(), response.text
            return response.status_code

        with ThreadPoolExecutor(max_workers=12) as pool:  # bounded: 24 requests, 12 at once
            assert set(pool.map(open_chat, customers)) == {200}

    gained = per_admin() - before
    assert sum(gained.values()) == 24
    assert sorted(gained[a] for a in admins) == [24 // len(admins)] * len(admins)


def test_an_admin_holding_a_socket_is_online_and_takes_the_next_customers(
    db: Settings, tmp_path: Path
) -> None:
    with running_server(db, tmp_path / "server.log", PRESENCE_HEARTBEAT_SECONDS="0.5") as server:
        newcomer = make_admin("Newcomer")  # the demo admin is older and holds no more than it

        async def scenario() -> list[str]:
            socket = await Subscription.open(server.url, user_token(newcomer))
            deadline = asyncio.get_running_loop().time() + 10
            while not online(newcomer):  # a real socket makes them online
                assert asyncio.get_running_loop().time() < deadline, "never online"
                await asyncio.sleep(0.05)
            chosen = [await asyncio.to_thread(open_for, server.url, make_user()) for _ in range(3)]
            await socket.close()
            return chosen

        assert asyncio.run(scenario()) == [str(newcomer)] * 3


def online(profile: UUID) -> bool:
    with database.connection_context():
        return bool(Profile.get_by_id(profile).is_online)


def open_for(url: str, customer: UUID) -> str:
    body = httpx.post(
        url,
        json={"query": OPEN},
        headers={"authorization": f"Bearer {user_token(customer)}"},
        timeout=30,
    ).json()
    return str(body["data"]["adminConversation"]["conversation"]["admin"]["id"])


def test_staff_see_how_many_conversations_an_admin_holds_customers_do_not(
    client: GraphQLClient,
) -> None:
    admin = make_admin()
    customers = [make_user() for _ in range(3)]
    for customer in customers:
        first_contact(customer)

    as_staff = client.data(COUNTS, c=str(customers[0]))["adminConversation"]
    as_admin = client.as_(user_token(admin)).data(COUNTS, c=str(customers[0]))
    as_customer = client.as_(user_token(customers[0])).data(COUNTS, c=str(customers[0]))

    assert as_staff["admin"] == {"id": str(admin), "assignedConversationCount": 3}
    assert as_staff["customer"] == {"assignedConversationCount": 0}
    assert as_admin["adminConversation"]["admin"]["assignedConversationCount"] == 3
    assert as_customer["adminConversation"]["admin"] == {
        "id": str(admin),
        "assignedConversationCount": None,
    }


def test_an_admin_can_list_only_their_own_queue(client: GraphQLClient) -> None:
    first_admin, second_admin = make_admin("First"), make_admin("Second")
    for _ in range(4):
        first_contact(make_user())  # two each, by the rule

    mine = client.as_(user_token(second_admin)).data(MY_INBOX, mine=True)["inbox"]["edges"]
    everyone = client.as_(user_token(second_admin)).data(MY_INBOX, mine=False)["inbox"]["edges"]

    assert {e["node"]["conversation"]["admin"]["id"] for e in mine} == {str(second_admin)}
    assert len(mine) == 2
    assert Counter(e["node"]["conversation"]["admin"]["id"] for e in everyone) == {
        str(first_admin): 2,
        str(second_admin): 2,
    }
    error = client.error(MY_INBOX, mine=True)  # service_role holds no conversations
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


def test_an_inbox_subscription_for_my_queue_hears_only_my_conversations(
    db: Settings, tmp_path: Path
) -> None:
    with running_server(db, tmp_path / "server.log") as server:
        admins = admins_in_database()  # the demo admin
        second = make_admin("Second")
        mine, theirs = [], []
        for _ in range(4):
            customer = make_user()
            chat = first_contact(customer).conversation
            (mine if chat.admin.id == second else theirs).append((customer, chat.id))
        assert mine and theirs and admins

        async def scenario() -> list[str]:
            sub = await Subscription.open(server.url, user_token(second))
            query = "subscription { inboxUpdated(assignedToMe: true) { lastMessage { content } } }"
            await sub.socket.send(
                json.dumps({"id": "q", "type": "subscribe", "payload": {"query": query}})
            )
            customer, conversation = mine[0]

            def is_probe(frame: dict[str, Any]) -> bool:
                return bool(frame["payload"]["data"]["inboxUpdated"]["lastMessage"])

            await until_flowing(
                sub,
                lambda: send_over_http(
                    server.url, user_token(customer), str(conversation), "probe"
                ),
                is_probe=is_probe,
            )
            other, other_conversation = theirs[0]
            await send_over_http(server.url, user_token(other), str(other_conversation), "x")
            await send_over_http(server.url, user_token(customer), str(conversation), "mine")
            heard = []
            while len(heard) < 1:
                frame = await sub.receive()
                heard.append(frame["payload"]["data"]["inboxUpdated"]["lastMessage"]["content"])
            await sub.close()
            return heard

        assert asyncio.run(scenario()) == ["mine"]  # "x" went to another admin's queue


ASSIGN = """mutation ($c: UUID!, $a: UUID!) { assignConversation(conversationId: $c, adminId: $a)
  { id admin { id assignedConversationCount } customer { id }
    messages(first: 5) { edges { node { content sender { id } } } } } }"""


def test_staff_hand_a_conversation_over_and_the_counts_follow(client: GraphQLClient) -> None:
    first, second = make_admin("First"), make_admin("Second")
    customer = make_user()
    chat = first_contact(customer).conversation
    assert chat.admin.id == first

    moved = client.data(ASSIGN, c=str(chat.id), a=str(second))["assignConversation"]
    again = client.as_(user_token(second)).data(ASSIGN, c=str(chat.id), a=str(second))

    assert moved["admin"] == {"id": str(second), "assignedConversationCount": 1}
    assert again["assignConversation"]["admin"]["id"] == str(second)  # a no-op that succeeds
    (welcome,) = moved["messages"]["edges"]
    assert welcome["node"]["sender"]["id"] == str(first)  # earlier messages keep their sender
    counts = client.data(COUNTS, c=str(customer))["adminConversation"]["admin"]
    assert counts == {"id": str(second), "assignedConversationCount": 1}
    assert first_contact(make_user()).conversation.admin.id == first  # level again: the oldest


@pytest.mark.parametrize(
    ("who", "target", "code"),
    [
        ("customer", "admin", "FORBIDDEN"),
        ("anonymous", "admin", "UNAUTHENTICATED"),
        ("service", "customer", "BAD_USER_INPUT"),  # not an admin's profile
        ("admin", "nobody", "BAD_USER_INPUT"),
        ("service", "no conversation", "NOT_FOUND"),
    ],
)
def test_who_may_assign_and_to_whom(
    client: GraphQLClient, who: str, target: str, code: str
) -> None:
    admin = make_admin()
    customer = make_user()
    chat = first_contact(customer).conversation
    caller = {
        "customer": user_token(customer),
        "anonymous": None,
        "service": client.token,
        "admin": user_token(admin),
    }[who]
    admin_id = {"admin": admin, "customer": customer, "nobody": uuid4()}.get(target, admin)
    conversation = uuid4() if target == "no conversation" else chat.id

    error = client.as_(caller).request(ASSIGN, c=str(conversation), a=str(admin_id)).json()

    assert [e["extensions"]["code"] for e in error["errors"]] == [code]
    assert first_contact(customer).conversation.admin.id == admin  # nothing moved


def test_an_admin_is_never_given_their_own_conversation(client: GraphQLClient) -> None:
    make_admin()
    staff_member = make_user()
    chat = first_contact(staff_member).conversation  # written to the desk as a customer
    with database.connection_context():
        Profile.update(is_admin=True).where(Profile.id == staff_member).execute()

    error = client.request(ASSIGN, c=str(chat.id), a=str(staff_member)).json()

    assert [e["extensions"]["code"] for e in error["errors"]] == ["BAD_USER_INPUT"]
    assert "own conversation" in error["errors"][0]["message"]
    assert first_contact(staff_member).conversation.admin.id == chat.admin.id  # nothing moved
    counts = client.data(COUNTS, c=str(staff_member))["adminConversation"]["admin"]
    assert counts == {"id": str(chat.admin.id), "assignedConversationCount": 1}


def test_both_admins_inboxes_hear_of_a_handover(db: Settings, tmp_path: Path) -> None:
    with running_server(db, tmp_path / "server.log") as server:
        first = make_admin("First")
        (demo_admin,) = [a for a in admins_in_database() if a != first]
        customer = make_user()
        chat = first_contact(customer).conversation
        giver = chat.admin.id
        taker = first if giver == demo_admin else demo_admin
        other_customer = make_user()
        other_chat = first_contact(other_customer).conversation  # the taker's, by the rule
        assert other_chat.admin.id == taker
        query = (
            "subscription { inboxUpdated(assignedToMe: true) "
            "{ conversation { id admin { id } } lastMessage { content } } }"
        )

        async def subscribed(admin: UUID, probe_into: tuple[UUID, UUID]) -> Subscription:
            """The admin's queue subscription, once it hears a probe in their conversation."""
            sub = await Subscription.open(server.url, user_token(admin))
            await sub.socket.send(
                json.dumps({"id": "q", "type": "subscribe", "payload": {"query": query}})
            )
            sender, conversation = probe_into

            def is_probe(frame: dict[str, Any]) -> bool:
                last = frame["payload"]["data"]["inboxUpdated"]["lastMessage"]
                return bool(last and last["content"] == "probe")

            await until_flowing(
                sub,
                lambda: send_over_http(server.url, user_token(sender), str(conversation), "probe"),
                is_probe=is_probe,
            )
            return sub

        async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
            subs = [
                await subscribed(giver, (customer, chat.id)),
                await subscribed(taker, (other_customer, other_chat.id)),
            ]
            await asyncio.to_thread(
                httpx.post,
                server.url,
                json={"query": ASSIGN, "variables": {"c": str(chat.id), "a": str(taker)}},
                headers={"authorization": f"Bearer {user_token(giver)}"},
                timeout=30,
            )
            heard = [await sub.receive() for sub in subs]
            for sub in subs:
                await sub.close()
            return heard[0], heard[1]

        for_giver, for_taker = asyncio.run(scenario())
    for heard in (for_giver, for_taker):  # the item says who holds it now
        item = heard["payload"]["data"]["inboxUpdated"]["conversation"]
        assert item == {"id": str(chat.id), "admin": {"id": str(taker)}}


def assigned_total(server_base: str, reason: str) -> float:
    page = httpx.get(f"{server_base}/metrics", timeout=10).text
    assert page.count("# TYPE helpline_conversations_assigned_total counter") == 1, page
    return metric(page, "helpline_conversations_assigned_total", reason=reason)


def remove_admin_out_of_process(db: Settings, email: str) -> subprocess.CompletedProcess[str]:
    """`helpline admin remove --reassign` as an operator runs it: its own process, which
    exits long before the next scrape."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "helpline"), "admin", "remove", email, "--reassign"],
        env={**os.environ, "DATABASE_URL": db.database.database_url, "JWT_SECRET": "x" * 40},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def check_admin_removed_total(db: Settings, server: Server) -> None:
    leaving = make_admin("Leaving")
    chats = [first_contact(make_user()).conversation for _ in range(4)]
    held = sum(c.admin.id == leaving for c in chats)
    assert held >= 1
    before = assigned_total(server.base, "admin_removed")

    removed = remove_admin_out_of_process(db, f"{leaving}@example.com")

    assert removed.returncode == 0, removed.stderr
    for _ in range(4):  # any worker answers the scrape; each reports the total once
        assert assigned_total(server.base, "admin_removed") == before + held
    assert remove_admin_out_of_process(db, f"{leaving}@example.com").returncode == 0  # no-op
    assert assigned_total(server.base, "admin_removed") == before + held


def test_conversations_handed_over_by_admin_remove_are_counted_by_the_servers(
    db: Settings, tmp_path: Path
) -> None:
    with running_server(db, tmp_path / "server.log") as server:
        assert assigned_total(server.base, "admin_removed") == 0  # exported before any
        check_admin_removed_total(db, server)


def test_admin_removed_is_counted_once_however_many_processes_serve_metrics(
    postgres: Settings, tmp_path: Path
) -> None:
    with running_server(postgres, tmp_path / "server.log", workers=2) as server:
        check_admin_removed_total(postgres, server)


def test_staff_list_the_team_to_hand_over_to_customers_may_not(client: GraphQLClient) -> None:
    first, second = make_admin("First"), make_admin("Second")
    first_contact(make_user())
    query = "{ admins { id name isAdmin assignedConversationCount } }"

    team = client.as_(user_token(second)).data(query)["admins"]
    refused = client.as_(user_token(make_user())).error(query)

    assert [(a["id"], a["name"], a["assignedConversationCount"]) for a in team] == [
        (str(first), "First", 1),
        (str(second), "Second", 0),
    ]
    assert (refused["extensions"]["code"], refused["message"]) == (
        "FORBIDDEN",
        "admins is for admins and operators",
    )
