"""Latency from a message's commit to its delivery to subscribers, across two worker processes.

Helpline (graphql-transport-ws, LISTEN/NOTIFY fan-out) and, in the same run, a baseline: a bare
psycopg2 LISTEN connection hearing a NOTIFY commit, which is the floor any fan-out over
PostgreSQL sits on. Loopback only, one machine clock; bounded.

The commit itself is not observable (PostgreSQL stamps it only with track_commit_timestamp,
which this leaves off), so each delivery is measured from two moments that bracket it:

- upper bound, from a time stamped inside the transaction, before COMMIT: the message's
  createdAt (clock_timestamp() at INSERT) or, for the baseline, clock_timestamp() next to the
  pg_notify. Commit comes later, so this over-states the commit-to-delivery latency.
- lower bound, from the moment the sender has the commit acknowledged: the sendMessage HTTP 200
  response in hand or, for the baseline, commit() returned. Commit came earlier, so this
  under-states it (and can be negative: a subscriber may hear of a message before its sender).

Each message's true commit-to-delivery latency lies between its two measures, and so does each
percentile. The run also scrapes /metrics (helpline_websocket_connections, one series per worker
pid) once every subscriber is connected, and warns loudly when one worker holds every socket.

    python -m bench.realtime [--subscribers 1000] [--conversations 100] [--messages 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import select
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import httpx2 as httpx
import psycopg2
import psycopg2.extensions
from websockets.asyncio.client import connect

from bench.common import (
    METRICS_TOKEN,
    ROOT,
    SECRET,
    bench_database,
    helpline_serve,
    percentile,
    stop,
    subscribe_over_websocket,
    wait_until_serving,
    write_section,
)
from gql.ops.tokens import mint
from repo.config import Settings
from repo.conversations import get_or_create_admin_conversation
from repo.database import close_database, open_database
from repo.migrate import migrate
from repo.models import Profile, User

DEADLINE_S = 300
WORKERS = 2
_SOCKETS_SAMPLE = re.compile(r'^helpline_websocket_connections\{pid="(\d+)"\} (\S+)$', re.M)


@dataclass(frozen=True)
class Latencies:
    """Commit-to-delivery latencies in milliseconds, bracketed (see the module docstring)."""

    upper: list[float]  # from a time stamped in the transaction, before COMMIT
    lower: list[float]  # from the moment the sender had the commit acknowledged
    bracket: list[float]  # per message: acknowledgement - in-transaction stamp


def bracketed(
    stamped: dict[int, float], acked: dict[int, float], deliveries: list[tuple[int, float]]
) -> Latencies:
    """Latencies of ``deliveries`` (message, receipt time) from both ends; times in seconds."""
    return Latencies(
        upper=[(received - stamped[i]) * 1000 for i, received in deliveries],
        lower=[(received - acked[i]) * 1000 for i, received in deliveries],
        bracket=[(acked[i] - stamped[i]) * 1000 for i in acked],
    )


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


def baseline(url: str, samples: int) -> Latencies:
    """NOTIFY commit -> LISTEN receipt on bare psycopg2, the listener on its own thread."""
    listener = psycopg2.connect(url)
    listener.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
    listener.cursor().execute("LISTEN bench")
    deliveries: list[tuple[int, float]] = []
    stop = threading.Event()

    def listen() -> None:
        while len(deliveries) < samples and not stop.is_set():
            if select.select([listener], [], [], 0.5) == ([], [], []):
                continue
            listener.poll()
            received = time.time()
            while listener.notifies:
                deliveries.append((int(listener.notifies.pop(0).payload), received))

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    sender = psycopg2.connect(url)
    stamped: dict[int, float] = {}
    acked: dict[int, float] = {}
    try:
        for i in range(samples):
            with sender, sender.cursor() as cursor:
                cursor.execute("SELECT clock_timestamp(), pg_notify('bench', %s)", (str(i),))
                stamped[i] = cursor.fetchone()[0].timestamp()
            acked[i] = time.time()  # commit() has returned
            time.sleep(0.005)
        thread.join(timeout=10)
    finally:
        stop.set()
        thread.join()
        listener.close()
        sender.close()
    if len(deliveries) < samples:
        raise TimeoutError(f"baseline: {samples - len(deliveries)} notifications lost")
    return bracketed(stamped, acked, deliveries)


def start_server(url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "JWT_SECRET": SECRET,
        "METRICS_TOKEN": METRICS_TOKEN,
        "WS_MAX_CONNECTIONS": "2000",
        "DB_POOL_SIZE": "20",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # `helpline serve` makes a fresh one
    with log.open("wb") as out:
        process = subprocess.Popen(
            helpline_serve(port, WORKERS),
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wait_until_serving(f"http://127.0.0.1:{port}/live", process, log)
    return process


async def sockets_per_worker(http: httpx.AsyncClient, port: int) -> dict[int, int]:
    """Open WebSockets per worker pid, from helpline_websocket_connections on /metrics."""
    response = await http.get(
        f"http://127.0.0.1:{port}/metrics",
        headers={"authorization": f"Bearer {METRICS_TOKEN}"},
    )
    response.raise_for_status()
    return {int(pid): int(float(value)) for pid, value in _SOCKETS_SAMPLE.findall(response.text)}


@dataclass(frozen=True)
class HelplineRun:
    latencies: Latencies
    sockets: dict[int, int]  # worker pid -> open WebSockets, once every subscriber was live


async def helpline_latencies(
    port: int, conversations: list[str], subscribers: int, messages: int
) -> HelplineRun:
    url = f"http://127.0.0.1:{port}/graphql"
    token = mint(SECRET, role="service_role", expires_in=3600)
    query = "subscription ($id: UUID!) { messageAdded(conversationId: $id) { content createdAt } }"
    deliveries: list[tuple[int, float]] = []
    stamped: dict[int, float] = {}  # message -> its createdAt, as sendMessage returns it
    acked: dict[int, float] = {}  # message -> sendMessage response in hand
    expected = messages * (subscribers // len(conversations))
    done = asyncio.Event()

    async def subscriber(conversation: str, ready: asyncio.Event) -> None:
        async with connect(
            f"ws://127.0.0.1:{port}/graphql", subprotocols=["graphql-transport-ws"]
        ) as socket:  # type: ignore[list-item]
            await subscribe_over_websocket(socket, token, query, {"id": conversation})
            ready.set()
            while not done.is_set():
                try:
                    raw = await asyncio.wait_for(socket.recv(), 1)
                except TimeoutError:
                    continue
                received = time.time()
                frame = json.loads(raw)
                if frame.get("type") != "next":
                    continue
                data = frame["payload"]["data"]["messageAdded"]
                if data["content"].startswith("bench "):
                    deliveries.append((int(data["content"].removeprefix("bench ")), received))
                    if len(deliveries) >= expected:
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
        sockets = await sockets_per_worker(http, port)
        send = (
            "mutation ($id: UUID!, $t: String!) "
            "{ sendMessage(conversationId: $id, content: $t) { createdAt } }"
        )
        for i in range(messages):
            response = await http.post(
                url,
                json={
                    "query": send,
                    "variables": {"id": conversations[i % len(conversations)], "t": f"bench {i}"},
                },
                headers={"authorization": f"Bearer {token}"},
            )
            acked[i] = time.time()  # committed before the server answered
            body = response.json()
            if response.status_code != 200 or "errors" in body:
                raise RuntimeError(f"sendMessage failed: {response.status_code} {response.text}")
            created = body["data"]["sendMessage"]["createdAt"]
            stamped[i] = datetime.fromisoformat(created).timestamp()
            await asyncio.sleep(0.01)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), 60)
    done.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return HelplineRun(bracketed(stamped, acked, deliveries), sockets)


def split_problem(sockets: dict[int, int], subscribers: int) -> str | None:
    """What is wrong with the subscribers' split over the workers, if anything."""
    if len(sockets) != WORKERS:
        return f"/metrics counts sockets for {len(sockets)} worker pid(s), not {WORKERS}"
    if sum(sockets.values()) != subscribers:
        return f"the workers hold {sum(sockets.values())} sockets, not {subscribers}"
    if min(sockets.values()) == 0:
        return "one worker holds every socket: this measured one process, not two"
    return None


def report(args: argparse.Namespace, base: Latencies, ours: HelplineRun, expected: int) -> str:
    def ms(value: float) -> str:
        return f"{value:.2f}"

    def row(name: str, latencies: Latencies) -> str:
        upper, lower = latencies.upper, latencies.lower
        return (
            f"| {name} | {len(upper)} | {ms(statistics.median(lower))} | "
            f"{ms(statistics.median(upper))} | {ms(percentile(lower, 0.99))} | "
            f"{ms(percentile(upper, 0.99))} |"
        )

    def ratio(ours_ms: float, base_ms: float) -> str:
        return f"x{ours_ms / base_ms:.1f}" if base_ms > 0 else "n/a (baseline at or below 0)"

    def ratios(ours_ms: list[float], base_ms: list[float]) -> str:
        p50 = ratio(statistics.median(ours_ms), statistics.median(base_ms))
        return f"p50 {p50}, p99 {ratio(percentile(ours_ms, 0.99), percentile(base_ms, 0.99))}"

    mine = ours.latencies
    split = ", ".join(f"{count} (pid {pid})" for pid, count in sorted(ours.sockets.items()))
    problem = split_problem(ours.sockets, args.subscribers)
    loose = " (over a baseline near 0, so loose)" if statistics.median(base.lower) < 0.1 else ""
    return "\n".join(
        [
            "## Live messages: commit to delivery",
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
            f"{os.cpu_count()} cores, PostgreSQL on loopback, by `make bench-realtime` "
            f"(`python -m bench.realtime --subscribers {args.subscribers} --conversations "
            f"{args.conversations} --messages {args.messages}`). `helpline serve --workers "
            f"{WORKERS}`; {args.subscribers} subscribers over {args.conversations} conversations, "
            "spread over the workers by the kernel; messages sent over HTTP, 10 ms apart. The "
            "baseline, run in the same session, is a bare psycopg2 LISTEN (on its own thread) "
            "hearing a NOTIFY commit, 5 ms apart.",
            "",
            "The commit is not observable (no `track_commit_timestamp`), so each delivery is "
            "timed from two moments on the same machine clock that bracket it. *Upper bound*: "
            "from a stamp taken inside the transaction, before COMMIT (the message's createdAt, "
            "`clock_timestamp()` at INSERT; for the baseline, `clock_timestamp()` beside the "
            "`pg_notify`). *Lower bound*: from the moment the sender had the commit acknowledged "
            "(the sendMessage HTTP 200 response in hand; for the baseline, `commit()` returned), "
            "which can be negative when a subscriber hears before the sender does. The true "
            "commit-to-delivery latency of every message, and so every percentile, lies between "
            "the two. Receipt is stamped by the one asyncio client that holds every socket, so "
            "its own scheduling delay counts as delivery time.",
            "",
            "| path | samples | p50 ms, lower | p50 ms, upper | p99 ms, lower | p99 ms, upper |",
            "|---|---|---|---|---|---|",
            row("baseline: NOTIFY commit -> LISTEN (psycopg2)", base),
            row("Helpline: sendMessage commit -> subscriber", mine),
            "",
            f"Ratio to the baseline, upper bounds: {ratios(mine.upper, base.upper)}; lower "
            f"bounds{loose}: {ratios(mine.lower, base.lower)}. The bracket is as wide as the "
            "sender's stamp-to-acknowledgement time: p50 "
            f"{ms(statistics.median(mine.bracket))} ms for Helpline (an HTTP round trip), "
            f"{ms(statistics.median(base.bracket))} ms for the baseline. Delivered "
            f"{len(mine.upper)} of {expected} expected frames.",
            "",
            f"Sockets per worker once every subscriber was connected "
            f"(`helpline_websocket_connections` by pid, scraped from `/metrics`): {split or 'none'}"
            + (f". **Warning: {problem}.**" if problem else "."),
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
    with bench_database("helpline_bench") as url:
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
                stop(server)
    expected = args.messages * (args.subscribers // args.conversations)
    section = report(args, base, ours, expected)
    print(section)
    write_section(Path(args.write), section)
    print(f"(took {time.monotonic() - started:.0f} s)")
    if problem := split_problem(ours.sockets, args.subscribers):
        print(f"\n*** WARNING: {problem} (sockets per pid: {ours.sockets}) ***", file=sys.stderr)
        return 1
    return 0 if len(ours.latencies.upper) == expected else 1


if __name__ == "__main__":
    sys.exit(main())
