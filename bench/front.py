"""CPU per hot request through the app's whole ASGI stack, in process: the request pipeline,
the fast front, the plan and its one indexed read (SQLite, so no network in the figure).

    python -m bench.front [--requests N]

Prints microseconds of CPU and of wall time per request (best of three passes, after a warm
up). To compare two commits, run it once per checkout, alternating, each with its own code on
PYTHONPATH (`PYTHONPATH=/path/to/checkout python -m bench.front`): the figures are per request
and in-process, so the HTTP server and the load generator add no noise of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from typing import Any
from uuid import uuid4

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


def hot_request(app: Any, token: str) -> Any:
    body = json.dumps({"query": HOT}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"authorization", f"Bearer {token}".encode()),
    ]
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "headers": headers,
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
        pending = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> Any:
            return pending.pop() if pending else {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            sent.append(message)

        await app(dict(scope), receive, send)
        if sent[0]["status"] != 200:
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
    args = parser.parse_args()
    settings = Settings.of(
        database_url=f"sqlite:///{tempfile.mkdtemp()}/front.db",
        jwt_secret=SECRET,
        access_log="errors",
    )
    migrate(settings.database)
    open_database(settings.database)
    admin, customer = uuid4(), uuid4()
    with database.connection_context():
        for user, email in ((admin, "admin@bench"), (customer, "customer@bench")):
            User.insert(id=user, email=email).execute()
        Profile.update(is_admin=True).where(Profile.id == admin).execute()
    get_or_create_admin_conversation(CustomerId(customer), welcome_message="hi")
    app = create_app(settings)
    token = mint(SECRET, role=AUTHENTICATED, sub=customer)
    cpu, wall = asyncio.run(passes(hot_request(app, token), args.requests))
    print(f"hot request in process: {cpu * 1e6:.0f} us CPU, {wall * 1e6:.0f} us wall")


if __name__ == "__main__":
    main()
