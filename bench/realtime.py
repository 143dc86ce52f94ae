"""Latency from a message's commit to its delivery to subscribers, across two worker processes.

Helpline (graphql-transport-ws, LISTEN/NOTIFY fan-out) and, in the same run, a baseline: a bare
psycopg2 LISTEN connection hearing a NOTIFY commit, which is the floor any fan-out over
PostgreSQL sits on. Latency = time a subscriber receives the message - the message's createdAt
(the server's clock_timestamp() at insert, on this same machine). Loopback only; bounded.

    python -m bench.realtime [--subscribers 1000] [--conversations 100] [--messages 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import httpx2 as httpx
import psycopg2
import psycopg2.extensions
from websockets.asyncio.client import connect

from gql.tokens import mint
from repo.config import Settings
from repo.conversations import get_or_create_admin_conversation
from repo.db import close_database, open_database
from repo.migrate import migrate
from repo.models import Profile, User

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-" + "x" * 40
SERVER_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DEADLINE_S = 300


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextlib.contextmanager
def bench_database() -> Iterator[str]:
    server = urlsplit(SERVER_URL)
    name = f"helpline_bench_{os.getpid()}"
    admin = psycopg2.connect(SERVER_URL)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield urlunsplit(server._replace(path=f"/{name}"))
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def seed(url: str, conversations: int) -> list[str]:
    settings = Settings(database_url=url)
    migrate(settings)
    open_database(settings)
    try:
        admin = uuid4()
        User.insert(id=admin, email="bench-admin@example.com", full_name="Bench Admin").execute()
        Profile.update(is_admin=True).where(Profile.id == admin).execute()
        ids = []
        for i in range(conversations):
            customer = uuid4()
            User.insert(id=customer, email=f"c{i}@example.com").execute()
            ids.append(str(get_or_create_admin_conversation(customer).conversation.id))
        return ids
    finally:
        close_database()


def baseline(url: str, samples: int) -> list[float]:
    """NOTIFY commit -> LISTEN receipt on bare psycopg2, in milliseconds."""
    listener = psycopg2.connect(url)
    listener.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
    listener.cursor().execute("LISTEN bench")
    sender = psycopg2.connect(url)
    latencies = []
    for _ in range(samples):
        with sender, sender.cursor() as cursor:
            cursor.execute("SELECT pg_notify('bench', clock_timestamp()::text)")
        while True:
            if select.select([listener], [], [], 5) == ([], [], []):
                raise TimeoutError("baseline notification lost")
            listener.poll()
            if listener.notifies:
                note = listener.notifies.pop(0)
                sent = datetime.fromisoformat(note.payload)
                latencies.append((datetime.now(UTC) - sent).total_seconds() * 1000)
                break
        time.sleep(0.005)
    listener.close()
    sender.close()
    return latencies


def start_server(url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "JWT_SECRET": SECRET,
        "WS_MAX_CONNECTIONS": "2000",
        "DB_POOL_SIZE": "20",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "helpline"),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "2",
            ],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/live", timeout=1)
            return process
        except httpx.TransportError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.2)


async def helpline_latencies(
    port: int, conversations: list[str], subscribers: int, messages: int
) -> list[float]:
    url = f"http://127.0.0.1:{port}/graphql"
    token = mint(SECRET, role="service_role", expires_in=3600)
    query = "subscription ($id: UUID!) { messageAdded(conversationId: $id) { content createdAt } }"
    latencies: list[float] = []
    expected = messages * (subscribers // len(conversations))
    done = asyncio.Event()

    async def subscriber(conversation: str, ready: asyncio.Event) -> None:
        async with connect(
            f"ws://127.0.0.1:{port}/graphql", subprotocols=["graphql-transport-ws"]
        ) as socket:  # type: ignore[list-item]
            await socket.send(
                json.dumps(
                    {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
                )
            )
            await socket.recv()
            await socket.send(
                json.dumps(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {"query": query, "variables": {"id": conversation}},
                    }
                )
            )
            ready.set()
            while not done.is_set():
                try:
                    frame = json.loads(await asyncio.wait_for(socket.recv(), 1))
                except TimeoutError:
                    continue
                if frame.get("type") != "next":
                    continue
                received = datetime.now(UTC)
                data = frame["payload"]["data"]["messageAdded"]
                if data["content"].startswith("bench"):
                    created = datetime.fromisoformat(data["createdAt"])
                    latencies.append((received - created).total_seconds() * 1000)
                    if len(latencies) >= expected:
                        done.set()

    readies = [asyncio.Event() for _ in range(subscribers)]
    tasks = [
        asyncio.create_task(subscriber(conversations[i % len(conversations)], readies[i]))
        for i in range(subscribers)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
    # Subscriptions register after their subscribe frame (a database read each): give a
    # loaded server time, so every subscriber is live before the first message.
    await asyncio.sleep(2 + subscribers / 100)
    async with httpx.AsyncClient(timeout=30) as http:
        send = (
            "mutation ($id: UUID!, $t: String!) "
            "{ sendMessage(conversationId: $id, content: $t) { id } }"
        )
        for i in range(messages):
            await http.post(
                url,
                json={
                    "query": send,
                    "variables": {"id": conversations[i % len(conversations)], "t": f"bench {i}"},
                },
                headers={"authorization": f"Bearer {token}"},
            )
            await asyncio.sleep(0.01)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), 60)
    done.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return latencies


def report(args: argparse.Namespace, base: list[float], ours: list[float], expected: int) -> str:
    def row(name: str, samples: list[float]) -> str:
        return (
            f"| {name} | {len(samples)} | {statistics.median(samples):.2f} | "
            f"{percentile(samples, 0.99):.2f} |"
        )

    ratio50 = statistics.median(ours) / statistics.median(base)
    ratio99 = percentile(ours, 0.99) / percentile(base, 0.99)
    return "\n".join(
        [
            "## Live messages: commit to delivery",
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
            f"{os.cpu_count()} cores, PostgreSQL on loopback, by `make bench-realtime` "
            f"(`python -m bench.realtime --subscribers {args.subscribers} --conversations "
            f"{args.conversations} --messages {args.messages}`). `helpline serve --workers 2`; "
            f"{args.subscribers} subscribers over {args.conversations} conversations, spread over "
            "both workers by the kernel; messages sent over HTTP, 10 ms apart. Latency is receipt "
            "time minus the message's createdAt (same machine clock). The baseline, run in the "
            "same session, is a bare psycopg2 LISTEN hearing a NOTIFY commit.",
            "",
            "| path | samples | p50 ms | p99 ms |",
            "|---|---|---|---|",
            row("baseline: NOTIFY -> LISTEN (psycopg2)", base),
            row("Helpline: sendMessage commit -> subscriber", ours),
            "",
            f"Ratio to the baseline: p50 x{ratio50:.1f}, p99 x{ratio99:.1f}. Delivered "
            f"{len(ours)} of {expected} expected frames.",
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--write", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    started = time.monotonic()
    with bench_database() as url:
        conversations = seed(url, args.conversations)
        base = baseline(url, 200)
        with tempfile.TemporaryDirectory() as tmp:
            port = 18000 + os.getpid() % 1000
            server = start_server(url, port, Path(tmp) / "server.log")
            try:
                ours = asyncio.run(
                    asyncio.wait_for(
                        helpline_latencies(port, conversations, args.subscribers, args.messages),
                        DEADLINE_S,
                    )
                )
            finally:
                server.terminate()
                server.wait(timeout=30)
    expected = args.messages * (args.subscribers // args.conversations)
    section = report(args, base, ours, expected)
    print(section)
    write_section(Path(args.write), section)
    print(f"(took {time.monotonic() - started:.0f} s)")
    return 0 if len(ours) == expected else 1


def write_section(path: Path, section: str) -> None:
    """Replace this benchmark's section of BENCHMARKS.md, keeping the others."""
    title = section.splitlines()[0]
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if title in text:
        start = text.index(title)
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end + 1 :] if end != -1 else "")
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
