"""CPU per request through the app's whole ASGI stack, in process: the request pipeline, the
fast front, the plan and its database work (SQLite, so no network in the figure).

    python -m bench.front [--requests N] [--workload hot|send|first]

``hot``: a customer's widget opening its existing conversation (one indexed read); ``send``: the
customer sending a message (``sendMessage``: the row lock, the store, the wait it starts);
``first``: a first contact (``adminConversation`` for a customer with no conversation yet:
the admin's choice, the profile, the conversation, the welcome message, the counts).

Prints microseconds of CPU and of wall time per request (best of three passes, after a warm
up). To compare two commits, run it once per checkout, alternating, each with its own code on
PYTHONPATH (`PYTHONPATH=/path/to/checkout python -m bench.front`): the figures are per request
and in-process, so the HTTP server and the load generator add no noise of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from typing import Any
from uuid import uuid4

from bench.common import bench_database
from gql.http.app import create_app
from gql.http.settings import Settings
from gql.ops.tokens import AUTHENTICATED, mint
from repo.conversations import get_or_create_admin_conversation
from repo.database import database, open_database
from repo.ids import CustomerId
from repo.migrate import migrate
from repo.models import Profile, User

SECRET = "s" * 40
HOT = "mutation { adminConversation { conversation { id lastMessageAt admin { name } } } }"
SEND = 'mutation ($id: UUID!) { sendMessage(conversationId: $id, content: "hello") { id } }'
FIRST = "mutation ($c: UUID!) { adminConversation(customerId: $c) { conversation { id } created } }"


def request(app: Any, token: str, document: str, variables: Any) -> Any:
    """One request as a coroutine factory; ``variables``: a callable giving each request's."""

    def body() -> bytes:
        return json.dumps({"query": document, "variables": variables()}).encode()

    auth = (b"authorization", f"Bearer {token}".encode())
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "scheme": "http",
        "http_version": "1.1",
        "root_path": "",
        "asgi": {"version": "3.0"},
    }

    async def one() -> None:
        sent: list[Any] = []
        content = body()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode()),
            auth,
        ]
        pending = [{"type": "http.request", "body": content, "more_body": False}]

        async def receive() -> Any:
            return pending.pop() if pending else {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            sent.append(message)

        await app({**scope, "headers": headers}, receive, send)
        if sent[0]["status"] != 200 or b'"errors"' in sent[1]["body"]:
            raise RuntimeError(sent)

    return one


async def passes(one: Any, requests: int) -> tuple[float, float]:
    for _ in range(200):
        await one()
    best = (float("inf"), float("inf"))
    for _ in range(3):
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(requests):
            await one()
        run = ((time.process_time() - cpu) / requests, (time.perf_counter() - wall) / requests)
        best = min(best, run)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--workload", choices=["hot", "send", "first"], default="hot")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="on a database of its own on BENCH_DATABASE_URL (loopback), not SQLite",
    )
    args = parser.parse_args()
    where = (
        bench_database("helpline_bench_front")
        if args.postgres
        else contextlib.nullcontext(f"sqlite:///{tempfile.mkdtemp()}/front.db")
    )
    with where as url:
        measure(url, args)


def measure(url: str, args: argparse.Namespace) -> None:
    settings = Settings.of(
        database_url=url,
        jwt_secret=SECRET,
        access_log="errors",
        rate_limit_messages_per_minute=10**9,  # the sends measured, not refused
    )
    migrate(settings.database)
    open_database(settings.database)
    admin, customer = uuid4(), uuid4()
    with database.connection_context():
        for user, email in ((admin, "admin@bench"), (customer, "customer@bench")):
            User.insert(id=user, email=email).execute()
        Profile.update(is_admin=True).where(Profile.id == admin).execute()
    opened = get_or_create_admin_conversation(CustomerId(customer), welcome_message="hi")
    app = create_app(settings)
    token = mint(SECRET, role=AUTHENTICATED, sub=customer)
    if args.workload == "hot":
        one = request(app, token, HOT, dict)
    elif args.workload == "send":
        chat = {"id": str(opened.conversation.id)}
        one = request(app, token, SEND, lambda: chat)
    else:
        newcomers = iter(new_customers(200 + 3 * args.requests))  # each pass, new ones
        one = request(app, mint(SECRET, role="service_role"), FIRST, lambda: {"c": next(newcomers)})
    cpu, wall = asyncio.run(passes(one, args.requests))
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"{args.workload} request in process ({backend}): "
        f"{cpu * 1e6:.0f} us CPU, {wall * 1e6:.0f} us wall"
    )


def new_customers(count: int) -> list[str]:
    """Users with a profile (the sign-up trigger's) and no conversation yet."""
    ids = [uuid4() for _ in range(count)]
    with database.connection_context(), database.atomic():
        User.insert_many([(i, f"{i}@bench") for i in ids], fields=[User.id, User.email]).execute()
    return [str(i) for i in ids]


if __name__ == "__main__":
    main()
