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

Issue #24's runs (``--mode scale``, run after this one by default) put a help desk on
``helpline serve --workers W``: N widgets (``messageAdded``) and K admin consoles
(``inboxUpdated``) held by bench.realtime_load processes, messages sent over HTTP at R per second
on a clock (open loop) for S seconds, then as fast as a fixed number of senders go with everyone
connected and with nobody connected. It reports commit-to-frame p50/p99 per kind (the upper bound
above), frames expected and delivered, each console's final items against ``Query.inbox``,
subscriptions ended, CPU and RSS per process, and RSS per idle subscribed widget.
``--mode bend`` runs a table of N:K:R points; ``--mode workers`` the fixed rate on 1, 2, 4
workers (CPU per worker per 1,000 frames).

    python -m bench.realtime --mode scale [--widgets 5000] [--consoles 20] [--rate 300]
        [--seconds 60] [--workers 2]
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
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx2 as httpx
import psycopg2
import psycopg2.extensions
from websockets.asyncio.client import connect

from bench.common import (
    METRICS_TOKEN,
    ROOT,
    SECRET,
    add_admin,
    add_customers_with_conversations,
    bench_database,
    helpline_serve,
    loopback,
    machine,
    percentile,
    seeding,
    stop,
    subscribe_over_websocket,
    wait_until_serving,
    write_section,
)
from gql.ops.tokens import mint

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
    with seeding(url) as settings:
        add_admin("bench-admin@example.com", "Bench Admin")
        made = add_customers_with_conversations(conversations, settings.graphql.welcome_message)
    return [conversation for _, conversation in made]


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


def start_server(
    url: str, port: int, log: Path, *, workers: int = WORKERS, ws_max_connections: int = 2000
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "JWT_SECRET": SECRET,
        "METRICS_TOKEN": METRICS_TOKEN,
        "WS_MAX_CONNECTIONS": str(ws_max_connections),
        "DB_POOL_SIZE": "20",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # `helpline serve` makes a fresh one
    with log.open("wb") as out:
        process = subprocess.Popen(
            helpline_serve(port, workers),
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

    async def subscriber(conversation: str, ready: asyncio.Event, index: int) -> None:
        async with connect(
            f"ws://127.0.0.1:{port}/graphql",
            subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
            local_addr=(loopback(index), 0),
        ) as socket:
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
        asyncio.create_task(subscriber(conversations[i % len(conversations)], readies[i], i))
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


# Issue #24: live at a help desk's scale. The load runs in bench.realtime_load processes.

SCALE_TITLE = "## Issue #24: live at a help desk's scale"
BEND_TITLE = "## Issue #24: where live delivery bends"
WORKERS_TITLE = "## Issue #24: delivery cost per worker process"
WS_MAX_PER_WORKER = 10_000
TOKEN_LIFETIME_S = 6 * 3600
QUIET_S = 2.0  # a phase is drained when no frame came for this long
DRAIN_TIMEOUT_S = 120
TARGET = {"p99_ms": 100.0, "idle_kib": 40.0, "ratio": 0.8}
INBOX = (
    "query ($after: String) { inbox(first: 100, after: $after) "
    "{ edges { node { id unreadCount lastMessage { id } } } pageInfo { hasNextPage endCursor } } }"
)
_started: list[subprocess.Popen[Any]] = []  # every process this run started, ended by pid


@dataclass(frozen=True)
class Desk:
    """The seeded help desk: each conversation with its customer's token, admins with theirs."""

    conversations: list[str]
    customer_tokens: list[str]
    admins: list[str]
    admin_tokens: list[str]
    service_token: str


def seed_desk(url: str, conversations: int, admins: int) -> Desk:
    with seeding(url) as settings:
        admin_ids = [add_admin(f"admin{k}@example.com", f"Admin {k}") for k in range(admins)]
        made = add_customers_with_conversations(conversations, settings.graphql.welcome_message)
    ids = [conversation for _, conversation in made]
    tokens = [user_token(customer, f"c{i}@example.com") for i, (customer, _) in enumerate(made)]
    return Desk(
        conversations=ids,
        customer_tokens=tokens,
        admins=[str(a) for a in admin_ids],
        admin_tokens=[user_token(a, f"admin{k}@example.com") for k, a in enumerate(admin_ids)],
        service_token=mint(SECRET, role="service_role", expires_in=TOKEN_LIFETIME_S),
    )


def user_token(user: UUID, email: str) -> str:
    return mint(SECRET, role="authenticated", sub=user, email=email, expires_in=TOKEN_LIFETIME_S)


def descendants(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for task in Path(f"/proc/{current}/task").iterdir():
                children = [int(c) for c in (task / "children").read_text().split()]
                found.extend(children)
                pending.extend(children)
    return found


def command_line(pid: int) -> bytes:
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    return b""


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of a live process, from /proc/<pid>/stat."""
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class LoadPool:
    """The client processes that hold the sockets; each gets every n-th item."""

    def __init__(self, count: int, log_dir: Path) -> None:
        self.processes: list[subprocess.Popen[str]] = []
        for n in range(count):
            with (log_dir / f"load-{n}.log").open("w") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "bench.realtime_load", "sockets"],
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                )
            _started.append(process)
            self.processes.append(process)

    def ask(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One command to each process (all at once), then each one's reply."""
        for process, command in zip(self.processes, commands, strict=True):
            assert process.stdin is not None
            process.stdin.write(json.dumps(command) + "\n")
            process.stdin.flush()
        replies = []
        for process in self.processes:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"load process {process.pid} ended (see its log)")
            replies.append(json.loads(line))
        return replies

    def broadcast(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        return self.ask([command] * len(self.processes))

    def spread(self, command: dict[str, Any], items: list[list[str]]) -> list[dict[str, Any]]:
        count = len(self.processes)
        return self.ask([command | {"items": items[n::count]} for n in range(count)])

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]


def end_started() -> None:
    """End every process this run started, by pid: politely, then for sure."""
    while _started:
        process = _started.pop()
        if process.poll() is None:
            with contextlib.suppress(OSError):
                if process.stdin is not None:
                    process.stdin.close()
            stop(process)


def run_senders(port: int, desk: Desk, config: dict[str, Any]) -> dict[str, Any]:
    """One run of bench.realtime_load's sender; its sends and its CPU."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.realtime_load", "send"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    _started.append(process)
    config = config | {
        "port": port,
        "conversations": desk.conversations[: config.get("spread", len(desk.conversations))],
        "customers": desk.customer_tokens,
        "service": desk.service_token,
    }
    out, _ = process.communicate(json.dumps(config) + "\n", timeout=DEADLINE_S * 4)
    _started.remove(process)
    if process.returncode != 0:
        raise RuntimeError(f"the sender failed with status {process.returncode}")
    result: dict[str, Any] = json.loads(out)
    return result


@dataclass
class Kind:
    """What one kind of subscriber (widgets or consoles) got in a phase."""

    expected: int = 0
    delivered: int = 0
    latencies: list[float] = field(default_factory=list)

    def p(self, q: float) -> float | None:
        return percentile(self.latencies, q) if self.latencies else None


@dataclass
class Phase:
    """One measured stretch: sends, what each kind of reader got, and what it cost."""

    name: str
    sent: int
    failed: dict[str, int]
    elapsed: float
    late_p99_ms: float
    widgets: Kind
    consoles: Kind
    duplicates: int
    consoles_exact: int
    consoles_checked: int
    states_wrong: dict[str, int]
    ended: dict[str, int]
    endings: list[str]
    extensions: list[str]
    window_s: float
    server_cpu: dict[int, float]
    server_rss_mib: dict[int, float]
    load_cpu: list[float]
    sender_cpu: float
    machine_busy: float

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed

    @property
    def frames(self) -> int:
        return self.widgets.delivered + self.consoles.delivered


@dataclass
class Rig:
    """One server, its seeded desk and the load processes; what is connected now."""

    url: str
    desk: Desk
    port: int
    workers: int
    server: subprocess.Popen[bytes]
    pool: LoadPool
    widget_conversations: list[str] = field(default_factory=list)
    consoles: list[int] = field(default_factory=list)  # admin indices with an open console
    touched: set[str] = field(default_factory=set)  # conversations with news since consoles

    def worker_pids(self) -> list[int]:
        """The uvicorn workers: the server's descendants but multiprocessing's resource tracker,
        or, with one worker, the server itself (uvicorn serves in its own process then)."""
        if self.workers == 1:
            return [self.server.pid]
        return [
            pid
            for pid in descendants(self.server.pid)
            if b"resource_tracker" not in command_line(pid)
        ]

    def rss_mib(self) -> dict[int, float]:
        return {pid: rss_mib_one(pid) for pid in [self.server.pid, *self.worker_pids()]}

    def probe(self, conversations: list[int]) -> None:
        """One message into each listed conversation, so every reader there hears something."""
        if not conversations:
            return
        config = {"targets": conversations, "concurrency": 16}
        result = run_senders(self.port, self.desk, config)
        failed = [s for s in result["sends"] if s[3]]
        if failed:
            raise RuntimeError(f"probe sends failed: {failed[:3]}")
        if self.consoles:
            self.touched.update(self.desk.conversations[c] for c in conversations)

    def connect_widgets(self, count: int, spread: int) -> None:
        items = [
            [self.desk.customer_tokens[i % spread], self.desk.conversations[i % spread]]
            for i in range(count)
        ]
        replies = self.pool.spread({"cmd": "widgets", "port": self.port}, items)
        self.widget_conversations = [item[1] for item in items]
        if refused := [f for r in replies for f in r["failures"]]:
            raise RuntimeError(f"{len(refused)}+ widgets could not connect: {refused[:3]}")
        self.probe(list(range(min(count, spread))))
        waiting = sum(
            r["waiting"]
            for r in self.pool.broadcast({"cmd": "live", "kind": "widget", "timeout": 120})
        )
        if waiting:
            raise RuntimeError(f"{waiting} widgets heard nothing of their probe")

    def connect_consoles(self, count: int) -> None:
        items = [[self.desk.admin_tokens[k], self.desk.admins[k]] for k in range(count)]
        replies = self.pool.spread({"cmd": "consoles", "port": self.port}, items)
        if refused := [f for r in replies for f in r["failures"]]:
            raise RuntimeError(f"{len(refused)}+ consoles could not connect: {refused[:3]}")
        self.consoles = list(range(count))
        self.touched = set()
        self.probe([0])
        waiting = sum(
            r["waiting"]
            for r in self.pool.broadcast({"cmd": "live", "kind": "console", "timeout": 60})
        )
        if waiting:
            raise RuntimeError(f"{waiting} consoles heard nothing of their probe")

    def disconnect(self) -> None:
        self.pool.broadcast({"cmd": "close"})
        self.widget_conversations, self.consoles, self.touched = [], [], set()
        time.sleep(2)  # the server lets go of its sockets

    def sockets_per_worker(self) -> dict[int, int]:
        response = httpx.get(
            f"http://127.0.0.1:{self.port}/metrics",
            headers={"authorization": f"Bearer {METRICS_TOKEN}"},
        )
        response.raise_for_status()
        return {int(p): int(float(v)) for p, v in _SOCKETS_SAMPLE.findall(response.text)}

    def inbox_of(self, admin: int) -> dict[str, list[Any]]:
        """Query.inbox as the admin sees it: conversation -> [last message id, unread]."""
        seen: dict[str, list[Any]] = {}
        after = None
        headers = {"authorization": f"Bearer {self.desk.admin_tokens[admin]}"}
        while True:
            body = {"query": INBOX, "variables": {"after": after}}
            response = httpx.post(
                f"http://127.0.0.1:{self.port}/graphql", json=body, headers=headers, timeout=60
            )
            page = response.json()["data"]["inbox"]
            for edge in page["edges"]:
                node = edge["node"]
                last = node["lastMessage"]
                seen[node["id"]] = [last["id"] if last else None, node["unreadCount"]]
            if not page["pageInfo"]["hasNextPage"]:
                return seen
            after = page["pageInfo"]["endCursor"]

    def check_consoles(
        self, latest: list[tuple[str, dict[str, list[Any]]]]
    ) -> tuple[int, dict[str, int]]:
        """Consoles whose last item of every touched conversation is Query.inbox's; what was not."""
        wrong = {"missing": 0, "stale": 0, "unread": 0}
        exact = 0
        for admin, seen in latest:
            truth = self.inbox_of(self.desk.admins.index(admin))
            mismatches = 0
            for conversation in self.touched:
                mine, real = seen.get(conversation), truth.get(conversation)
                if mine == real:
                    continue
                mismatches += 1
                if mine is None:
                    wrong["missing"] += 1
                elif real is None or mine[0] != real[0]:
                    wrong["stale"] += 1
                else:
                    wrong["unread"] += 1
            exact += mismatches == 0
        return exact, wrong

    def phase(self, name: str, config: dict[str, Any]) -> Phase:
        pids = self.worker_pids()
        server_before = {pid: cpu_of(pid) for pid in pids}
        load_before = [r["cpu"] for r in self.pool.broadcast({"cmd": "phase"})]
        busy_before, total_before = machine_busy()
        started = time.monotonic()
        sent = run_senders(self.port, self.desk, config)
        self.pool.broadcast({"cmd": "quiet", "still": QUIET_S, "timeout": DRAIN_TIMEOUT_S})
        window = time.monotonic() - started - QUIET_S
        server_cpu = {pid: cpu_of(pid) - server_before[pid] for pid in pids}
        busy_after, total_after = machine_busy()
        rss = self.rss_mib()
        collected = self.pool.broadcast({"cmd": "collect"})
        sends = sent["sends"]
        ok = [s for s in sends if not s[3]]
        if self.consoles:
            self.touched.update(self.desk.conversations[s[0]] for s in ok)
        failed: dict[str, int] = {}
        for s in sends:
            if s[3]:
                failed[s[3]] = failed.get(s[3], 0) + 1
        by_conversation: dict[str, set[str]] = {}
        for s in ok:
            by_conversation.setdefault(self.desk.conversations[s[0]], set()).add(s[1])
        widgets, consoles = Kind(), Kind()
        duplicates = 0
        ended = {"error": 0, "complete": 0, "closed": 0, "refused": 0}
        endings: list[str] = []
        latest: list[tuple[str, dict[str, list[Any]]]] = []
        for reply in collected:
            for conversation, received in reply["widgets"]:
                expected = by_conversation.get(conversation, set())
                widgets.expected += len(expected)
                widgets.delivered += len(expected.intersection(received))
                duplicates += len(received) - len(set(received))
            widgets.latencies += reply["latencies"]["widget"]
            consoles.latencies += reply["latencies"]["console"]
            for key, count in reply["ended"].items():
                ended[key] += count
            endings += reply["endings"]
            latest += [(admin, seen) for admin, seen in reply["consoles"]]
        consoles.expected = len(ok) * len(self.consoles)
        consoles.delivered = len(consoles.latencies)
        exact, wrong = self.check_consoles(latest)
        late = [s[4] * 1000 for s in sends]
        return Phase(
            name=name,
            sent=len(ok),
            failed=failed,
            elapsed=sent["elapsed"],
            late_p99_ms=percentile(late, 0.99) if late else 0.0,
            widgets=widgets,
            consoles=consoles,
            duplicates=duplicates,
            consoles_exact=exact,
            consoles_checked=len(latest),
            states_wrong=wrong,
            ended=ended,
            endings=endings,
            extensions=sorted({e for r in collected for e in r["extensions"]}),
            window_s=window,
            server_cpu=server_cpu,
            server_rss_mib=rss,
            load_cpu=[r["cpu"] - b for r, b in zip(collected, load_before, strict=True)],
            sender_cpu=sent["cpu"],
            machine_busy=(busy_after - busy_before) / max(1, total_after - total_before),
        )


def rss_mib_one(pid: int) -> float:
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def rig(url: str, desk: Desk, workers: int, load_processes: int) -> Iterator[Rig]:
    """A server of ``workers`` processes on the desk's database, and the load processes."""
    with tempfile.TemporaryDirectory() as tmp:
        port = 19000 + os.getpid() % 1000
        server = start_server(
            url,
            port,
            Path(tmp) / "server.log",
            workers=workers,
            ws_max_connections=WS_MAX_PER_WORKER,
        )
        _started.append(server)
        try:
            yield Rig(url, desk, port, workers, server, LoadPool(load_processes, Path(tmp)))
        finally:
            end_started()
            keep_logs(Path(tmp))


LOG_DIR = ROOT / ".bench-logs"  # the last run's server and load logs, to read after it


def keep_logs(tmp: Path) -> None:
    """Keep the run's logs (the temporary folder goes), and warn of any worker restarted."""
    shutil.rmtree(LOG_DIR, ignore_errors=True)
    shutil.copytree(tmp, LOG_DIR, ignore=shutil.ignore_patterns("*.sock"))
    server_log = (LOG_DIR / "server.log").read_text(errors="replace")
    for line in server_log.splitlines():
        if "Child process" in line or "Traceback" in line:
            print(f"warning: server log: {line.strip()}", file=sys.stderr)


def warm_up(r: Rig) -> None:
    """A few sends and one subscription, so N = 0 is measured on a server that has served."""
    r.connect_widgets(2, 2)
    r.probe(list(range(10)))
    r.disconnect()


@dataclass
class ScaleRun:
    phases: list[Phase]
    idle_kib: float | None  # RSS per idle subscribed widget
    rss_idle: tuple[float, float]  # server MiB at N = 0 and at N
    split: dict[int, int]
    nofile: int


def run_scale(args: argparse.Namespace) -> ScaleRun:
    spread = args.conversations or max(1, min(args.widgets, 1000))
    with bench_database("helpline_scale") as url:
        desk = seed_desk(url, spread, max(1, args.consoles))
        with rig(url, desk, args.workers, args.load_processes) as r:
            warm_up(r)
            time.sleep(2)
            before = sum(r.rss_mib().values())
            r.connect_widgets(args.widgets, spread)
            time.sleep(2)
            after = sum(r.rss_mib().values())
            split = r.sockets_per_worker()
            r.connect_consoles(args.consoles)
            nofile = r.pool.broadcast({"cmd": "phase"})[0]["nofile"]
            fixed = r.phase(
                f"{args.rate}/s for {args.seconds} s",
                {"rate": args.rate, "seconds": args.seconds, "concurrency": args.in_flight},
            )
            holds = {"seconds": args.hold_seconds, "concurrency": args.senders}
            connected = r.phase("as fast as it goes, everyone connected", holds)
            r.disconnect()
            alone = r.phase("as fast as it goes, nobody connected", holds)
    idle = (after - before) * 1024 / args.widgets if args.widgets else None
    return ScaleRun([fixed, connected, alone], idle, (before, after), split, nofile)


def ms_or_dash(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def phase_rows(phases: list[Phase], consoles: int) -> list[str]:
    rows = [
        "| phase | sends/s | widget frames delivered / expected | widget p50 / p99 ms "
        "| console frames / one per message | console p50 / p99 ms | consoles exact at the end "
        "| subscriptions ended | server CPU s per process | load CPU s | machine busy |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in phases:
        ended = sum(p.ended.values())
        failed = f" ({sum(p.failed.values())} failed: {p.failed})" if p.failed else ""
        cpu = ", ".join(f"{v:.1f}" for v in p.server_cpu.values())
        load = " + ".join(f"{v:.1f}" for v in p.load_cpu) + f" + sender {p.sender_cpu:.1f}"
        rows.append(
            f"| {p.name} | {p.rate:.0f}{failed} | {p.widgets.delivered:,} / "
            f"{p.widgets.expected:,} | {ms_or_dash(p.widgets.p(0.5))} / "
            f"{ms_or_dash(p.widgets.p(0.99))} | {p.consoles.delivered:,} / "
            f"{p.consoles.expected:,} | {ms_or_dash(p.consoles.p(0.5))} / "
            f"{ms_or_dash(p.consoles.p(0.99))} | "
            f"{f'{p.consoles_exact} of {consoles}' if p.consoles_checked else '—'} | "
            f"{ended}{f' {p.ended}' if ended else ''} | {cpu} | {load} | "
            f"{p.machine_busy:.0%} |"
        )
    return rows


def holds(p: Phase, consoles: int) -> bool:
    """Every widget frame, every console exact, both p99s under target, nothing ended."""
    p99s = [v for v in (p.widgets.p(0.99), p.consoles.p(0.99)) if v is not None]
    return (
        p.widgets.delivered == p.widgets.expected
        and p.consoles_exact == consoles == p.consoles_checked
        and all(v < TARGET["p99_ms"] for v in p99s)
        and sum(p.ended.values()) == 0
    )


def settings_text(args: argparse.Namespace, workers: int, nofile: int, extensions: str) -> str:
    return (
        f"`helpline serve --workers {workers}` with `WS_MAX_CONNECTIONS={WS_MAX_PER_WORKER}` "
        "per worker, `DB_POOL_SIZE=20`, `MAX_CONNECTIONS` at its default (10,000 per process), "
        "the access log at its default (every request); the server raises its own open-file "
        f"limit. Load: {args.load_processes} socket processes (asyncio + websockets, "
        f"RLIMIT_NOFILE raised to {nofile:,}, no client pings, WebSocket extensions "
        f"negotiated: {extensions or 'none'}) and one sender process (httpx, asyncio)"
    )


def report_scale(args: argparse.Namespace, run: ScaleRun) -> str:
    fixed, connected, alone = run.phases
    ratio = connected.rate / alone.rate if alone.rate else 0.0
    split = ", ".join(f"{n:,} (pid {pid})" for pid, n in sorted(run.split.items()))
    ended_runs = sum(sum(p.ended.values()) for p in (fixed, connected))
    p99w, p99c = fixed.widgets.p(0.99), fixed.consoles.p(0.99)
    at_target = (args.widgets, args.consoles, args.rate) == (5000, 20, 300)

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    targets = [
        (
            "every widget frame delivered",
            f"{fixed.widgets.delivered:,} of {fixed.widgets.expected:,}",
            fixed.widgets.delivered == fixed.widgets.expected,
        ),
        (
            "consoles end with the final state and exact unread counts",
            f"{fixed.consoles_exact} of {args.consoles} exact ({fixed.states_wrong})",
            fixed.consoles_exact == args.consoles == fixed.consoles_checked,
        ),
        (
            "widget p99 under 100 ms",
            f"{ms_or_dash(p99w)} ms",
            p99w is not None and p99w < TARGET["p99_ms"],
        ),
        (
            "console p99 under 100 ms",
            f"{ms_or_dash(p99c)} ms",
            p99c is None or p99c < TARGET["p99_ms"],
        ),
        (
            "no subscription ended while its client reads",
            f"{ended_runs} ended (fixed rate and everyone-connected runs)",
            ended_runs == 0,
        ),
        (
            "at most 40 KiB per idle subscribed widget",
            "—" if run.idle_kib is None else f"{run.idle_kib:.1f} KiB",
            run.idle_kib is not None and run.idle_kib <= TARGET["idle_kib"],
        ),
        (
            "most-it-holds ratio at least 0.8",
            f"{connected.rate:.0f} / {alone.rate:.0f} = {ratio:.2f}",
            ratio >= TARGET["ratio"],
        ),
    ]
    endings = [e for p in run.phases for e in p.endings][:3]
    rss = ", ".join(f"{v:.0f}" for v in fixed.server_rss_mib.values())
    extensions = ", ".join(e for e in fixed.extensions if e)
    lines = [
        SCALE_TITLE,
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}, by "
        f"`python -m bench.realtime --mode scale --widgets {args.widgets} --consoles "
        f"{args.consoles} --rate {args.rate} --seconds {args.seconds} --workers {args.workers}` "
        f"(hold runs {args.hold_seconds} s, {args.senders} senders). "
        + settings_text(args, args.workers, run.nofile, extensions)
        + ".",
        "",
        f"{args.widgets:,} widgets, each a customer's own `messageAdded` on its conversation "
        f"({max(1, min(args.widgets, args.conversations or 1000))} conversations, widgets spread "
        f"round-robin), and {args.consoles} admin consoles (`inboxUpdated`, each an admin's own "
        "token). Messages are stored with `sendMessage` over HTTP into random conversations, "
        "alternately as the conversation's customer and as service_role (so unread counts differ "
        "per admin). *Fixed rate*: open loop, each send scheduled on the clock "
        f"(at most {args.in_flight} in flight; p99 start delay "
        f"{fixed.late_p99_ms:.0f} ms). *As fast as it goes*: {args.senders} senders, each "
        "sending again on its answer, first with everyone connected, then, on the same server, "
        "with every socket closed: the ratio of the two is the most-it-holds ratio.",
        "",
        "Latency is commit-to-frame, upper bound: from the message's `createdAt` "
        "(`clock_timestamp()` at INSERT, before COMMIT) to the frame's arrival in the load "
        "process, on the same machine clock; a console frame is timed from its `lastMessage`. "
        "Widgets: each must get every message of its conversation (expected = successful sends "
        "into its conversation). Consoles may coalesce, so their expected count is an upper "
        "bound (one frame per message per console); after the run each console's last item per "
        "conversation is compared with `Query.inbox` for that admin (last message id and "
        "unread count) over every conversation that had a message since it subscribed. "
        "Subscriptions ended: `error` and `complete` frames and socket closes the client did "
        "not ask for. A phase ends when no frame came for 2 s; CPU is over the phase with that "
        "drain, read from `/proc` (server: each uvicorn worker; load: each process's own "
        "`getrusage`); *machine busy* is the whole machine's (PostgreSQL included).",
        "",
        *phase_rows(run.phases, args.consoles),
        "",
        f"Idle memory: the server's RSS (supervisor and workers) was {run.rss_idle[0]:.0f} MiB "
        f"after a warm-up with no socket, {run.rss_idle[1]:.0f} MiB with {args.widgets:,} "
        "widgets subscribed and idle (each had heard one message). Sockets per worker: "
        f"{split or 'none'}. RSS after the fixed-rate run, MiB per process: {rss}.",
        "",
        "Targets of issue #24"
        + ("" if at_target else " (set for N = 5,000, K = 20, R = 300; this run is smaller)")
        + ":",
        "",
        "| target | measured | |",
        "|---|---|---|",
        *(f"| {name} | {measured} | {verdict(ok)} |" for name, measured, ok in targets),
        "",
    ]
    if endings:
        lines += ["First endings, verbatim: " + "; ".join(f"`{e[:200]}`" for e in endings), ""]
    return "\n".join(lines)


def parse_points(text: str) -> list[tuple[int, int, int]]:
    points = []
    for point in text.split(","):
        n, k, r = (int(v) for v in point.split(":"))
        points.append((n, k, r))
    return points


def run_bend(args: argparse.Namespace) -> str:
    points = parse_points(args.points)
    spread = args.conversations or max(1, min(max(n for n, _, _ in points), 1000))
    results: list[tuple[tuple[int, int, int], Phase]] = []
    with bench_database("helpline_bend") as url:
        desk = seed_desk(url, spread, max(1, *(k for _, k, _ in points)))
        with rig(url, desk, args.workers, args.load_processes) as r:
            warm_up(r)
            for n, k, rate in points:
                r.connect_widgets(n, min(n, spread) or 1)
                r.connect_consoles(k)
                config = {"rate": rate, "seconds": args.seconds, "concurrency": args.in_flight}
                results.append(((n, k, rate), r.phase(f"{n}:{k}:{rate}", config)))
                r.disconnect()
            nofile = r.pool.broadcast({"cmd": "phase"})[0]["nofile"]
    rows = [
        "| widgets | consoles | sends/s asked / done | widget frames delivered / expected "
        "| widget p50 / p99 ms | console p50 / p99 ms | consoles exact | ended | holds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (n, k, rate), p in results:
        rows.append(
            f"| {n:,} | {k} | {rate} / {p.rate:.0f} | {p.widgets.delivered:,} / "
            f"{p.widgets.expected:,} | {ms_or_dash(p.widgets.p(0.5))} / "
            f"{ms_or_dash(p.widgets.p(0.99))} | {ms_or_dash(p.consoles.p(0.5))} / "
            f"{ms_or_dash(p.consoles.p(0.99))} | {p.consoles_exact} of {k} | "
            f"{sum(p.ended.values())} | {'yes' if holds(p, k) else 'no'} |"
        )
    held = [point for point, p in results if holds(p, point[1])]
    largest = ", ".join(f"N = {n:,}, K = {k}, R = {r}" for n, k, r in held[-1:]) or "none"
    extensions = ", ".join(e for _, p in results for e in p.extensions if e)
    return "\n".join(
        [
            BEND_TITLE,
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}, by "
            f"`python -m bench.realtime --mode bend --points {args.points} --seconds "
            f"{args.seconds}`: one server and database for every point, each point "
            f'{args.seconds} s at a fixed rate (open loop), measured as in "{SCALE_TITLE[3:]}". '
            + settings_text(args, args.workers, nofile, extensions)
            + ". A point holds when every widget frame arrived, every console ended exact, "
            "nothing ended and both p99s are under 100 ms.",
            "",
            *rows,
            "",
            f"Largest point that holds (the last in the list that does): {largest}.",
            "",
        ]
    )


def run_workers(args: argparse.Namespace) -> str:
    counts = [int(w) for w in args.worker_counts.split(",")]
    spread = args.conversations or max(1, min(args.widgets, 1000))
    results: list[tuple[int, Phase]] = []
    with bench_database("helpline_workers") as url:
        desk = seed_desk(url, spread, max(1, args.consoles))
        for workers in counts:
            with rig(url, desk, workers, args.load_processes) as r:
                warm_up(r)
                r.connect_widgets(args.widgets, spread)
                r.connect_consoles(args.consoles)
                config = {"rate": args.rate, "seconds": args.seconds, "concurrency": args.in_flight}
                results.append((workers, r.phase(f"{workers} workers", config)))
                nofile = r.pool.broadcast({"cmd": "phase"})[0]["nofile"]
    rows = [
        "| workers | sends/s | frames delivered | widget p99 ms | console p99 ms | ended "
        "| CPU s per worker | CPU s per worker per 1,000 frames | all workers per 1,000 frames |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for workers, p in results:
        per_worker = list(p.server_cpu.values())
        thousands = max(1, p.frames) / 1000
        rows.append(
            f"| {workers} | {p.rate:.0f} | {p.frames:,} | {ms_or_dash(p.widgets.p(0.99))} | "
            f"{ms_or_dash(p.consoles.p(0.99))} | {sum(p.ended.values())} | "
            + ", ".join(f"{v:.1f}" for v in per_worker)
            + f" | {statistics.mean(per_worker) / thousands:.3f} | "
            f"{sum(per_worker) / thousands:.3f} |"
        )
    extensions = ", ".join(e for _, p in results for e in p.extensions if e)
    return "\n".join(
        [
            WORKERS_TITLE,
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}, by "
            f"`python -m bench.realtime --mode workers --worker-counts {args.worker_counts} "
            f"--widgets {args.widgets} --consoles {args.consoles} --rate {args.rate} --seconds "
            f"{args.seconds}`: a fresh server per worker count on one database, the same load "
            "at a fixed rate (open loop), measured as in "
            f'"{SCALE_TITLE[3:]}". '
            + settings_text(args, counts[-1], nofile, extensions)
            + ". Every worker LISTENs and hears every event, so each worker's CPU is set "
            "against all frames delivered (widgets and consoles, by every worker); the CPU "
            "includes serving the sends, split over the workers by the kernel.",
            "",
            *rows,
            "",
        ]
    )


def run_latency(args: argparse.Namespace) -> int:
    """Today's run: commit to delivery against the bare LISTEN baseline."""
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
    if problem := split_problem(ours.sockets, args.subscribers):
        print(f"\n*** WARNING: {problem} (sockets per pid: {ours.sockets}) ***", file=sys.stderr)
        return 1
    return 0 if len(ours.latencies.upper) == expected else 1


def interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # so every finally ends what it started


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--mode",
        choices=["all", "latency", "scale", "bend", "workers"],
        default="all",
        help="all: latency, then scale (default); bend: a table of --points; "
        "workers: the scale load's fixed rate for each of --worker-counts",
    )
    latency = parser.add_argument_group("latency (today's run)")
    latency.add_argument("--subscribers", type=int, default=1000)
    latency.add_argument("--messages", type=int, default=200)
    latency.add_argument(
        "--conversations",
        type=int,
        default=None,
        help="latency: 100; scale: min(widgets, 1000), widgets spread round-robin",
    )
    scale = parser.add_argument_group("scale, bend, workers (issue #24)")
    scale.add_argument("--widgets", type=int, default=5000, help="N messageAdded sockets")
    scale.add_argument("--consoles", type=int, default=20, help="K inboxUpdated sockets")
    scale.add_argument("--rate", type=int, default=300, help="R sends per second, open loop")
    scale.add_argument("--seconds", type=int, default=60, help="S of the fixed-rate run")
    scale.add_argument("--workers", type=int, default=WORKERS, help="W server processes")
    scale.add_argument("--hold-seconds", type=int, default=30, help="each as-fast-as-it-goes run")
    scale.add_argument("--senders", type=int, default=32, help="concurrent senders when holding")
    scale.add_argument("--in-flight", type=int, default=64, help="open loop's bound in flight")
    scale.add_argument("--load-processes", type=int, default=2, help="socket-holding processes")
    scale.add_argument(
        "--points", default="1000:5:100,2000:10:150,5000:20:300,5000:20:500", help="bend: N:K:R,..."
    )
    scale.add_argument("--worker-counts", default="1,2,4", help="workers: W,...")
    parser.add_argument("--write", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, interrupted)
    started = time.monotonic()
    status = 0
    try:
        if args.mode in ("all", "latency"):
            status = run_latency(
                argparse.Namespace(**{**vars(args), "conversations": args.conversations or 100})
            )
        sections = []
        if args.mode in ("all", "scale"):
            sections.append(report_scale(args, run_scale(args)))
        if args.mode == "bend":
            sections.append(run_bend(args))
        if args.mode == "workers":
            sections.append(run_workers(args))
    finally:
        end_started()
    for section in sections:
        print(section)
        write_section(Path(args.write), section)
    print(f"(took {time.monotonic() - started:.0f} s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
