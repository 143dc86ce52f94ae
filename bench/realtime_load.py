"""The load of ``bench.realtime``'s scale runs: sockets that read, and senders on a clock.

Started by ``python -m bench.realtime`` (never on its own), one JSON line in and one out per
command, so the bench can spread the client over processes and read each one's CPU:

- ``python -m bench.realtime_load sockets``: holds a share of the widgets (``messageAdded``)
  and admin consoles (``inboxUpdated``) on real graphql-transport-ws sockets, asyncio and
  websockets; stamps each frame's arrival on the machine clock. Commands: ``widgets``,
  ``consoles`` (open and subscribe), ``live`` (wait until every socket has had a frame),
  ``phase`` (start counting afresh), ``quiet`` (wait until no frame came for a while),
  ``collect``, ``close``. Ends at the end of its input.
- ``python -m bench.realtime_load send``: one run of ``sendMessage`` over HTTP, open loop at a
  rate (each send scheduled on the clock, not after the previous one; at most ``concurrency``
  in flight), as fast as ``concurrency`` senders go, or once into each listed conversation.

Every reply carries the process's CPU seconds so far (user + system).
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx2 as httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.common import loopback

WIDGET = (
    "subscription ($id: UUID!) { messageAdded(conversationId: $id) "
    "{ id content createdAt sender { id name avatarUrl } } }"
)
CONSOLE = (
    "subscription { inboxUpdated { id unreadCount conversation { id updatedAt "
    "customer { name } } lastMessage { id content createdAt sender { name } } } }"
)
SEND = (
    "mutation ($id: UUID!, $t: String!) "
    "{ sendMessage(conversationId: $id, content: $t) { id createdAt } }"
)
CONNECTS_IN_FLIGHT = 50
ENDINGS_KEPT = 5  # the first few error/complete payloads, verbatim, for the report


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def stamp(created_at: str) -> float:
    return datetime.fromisoformat(created_at).timestamp()


@dataclass
class Reader:
    """One socket with one subscription, and what arrived on it in the current phase."""

    kind: str  # "widget" or "console"
    subject: str  # a widget's conversation, a console's admin
    frames: int = 0  # "next" frames since the socket opened
    received: list[str] = field(default_factory=list)  # widget: message ids this phase
    latest: dict[str, list[Any]] = field(default_factory=dict)  # console: [msg id, unread]


class Sockets:
    """Every socket of this process; counts frames, latencies and subscriptions ended."""

    def __init__(self) -> None:
        self.readers: list[Reader] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.sockets: list[ClientConnection] = []
        self.latencies: dict[str, list[float]] = {"widget": [], "console": []}
        self.ended = {"error": 0, "complete": 0, "closed": 0, "refused": 0}
        self.endings: list[str] = []
        self.extensions: set[str] = set()
        self.closing = False
        self.last_frame = time.monotonic()

    async def open(self, port: int, kind: str, items: list[list[str]]) -> dict[str, Any]:
        gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
        failures: list[str] = []

        async def one(index: int, item: list[str]) -> None:
            token, subject = item
            async with gate:
                try:
                    socket = await connect(
                        f"ws://127.0.0.1:{port}/graphql",
                        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                        local_addr=(loopback(index), 0),
                        ping_interval=None,  # as a browser: no client pings
                        open_timeout=60,
                        max_queue=None,
                    )
                    init = {
                        "type": "connection_init",
                        "payload": {"Authorization": f"Bearer {token}"},
                    }
                    await socket.send(json.dumps(init))
                    ack = json.loads(await asyncio.wait_for(socket.recv(), 60))
                    if ack.get("type") != "connection_ack":
                        raise RuntimeError(f"no ack: {ack}")
                except Exception as error:  # counted and reported
                    self.ended["refused"] += 1
                    failures.append(f"{type(error).__name__}: {error}"[:200])
                    return
                self.extensions.add(socket.response.headers.get("Sec-WebSocket-Extensions", ""))
                query, variables = (WIDGET, {"id": subject}) if kind == "widget" else (CONSOLE, {})
                payload = {"query": query, "variables": variables}
                await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
                reader = Reader(kind, subject)
                self.readers.append(reader)
                self.sockets.append(socket)
                self.tasks.append(asyncio.create_task(self.read(socket, reader)))

        await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
        return {"opened": len(items) - len(failures), "failures": failures[:ENDINGS_KEPT]}

    async def read(self, socket: ClientConnection, reader: Reader) -> None:
        try:
            async for raw in socket:
                received = time.time()
                self.last_frame = time.monotonic()
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "next":
                    reader.frames += 1
                    self.take(reader, frame["payload"], received)
                elif kind in ("error", "complete"):
                    self.ended[kind] += 1
                    if len(self.endings) < ENDINGS_KEPT:
                        self.endings.append(raw if isinstance(raw, str) else raw.decode())
                elif kind == "ping":
                    await socket.send(json.dumps({"type": "pong"}))
        except ConnectionClosed:
            pass
        if not self.closing:
            self.ended["closed"] += 1
            if len(self.endings) < ENDINGS_KEPT and (close := socket.close_rcvd) is not None:
                self.endings.append(f"socket closed {close.code} {close.reason}")

    def take(self, reader: Reader, payload: dict[str, Any], received: float) -> None:
        data = payload.get("data") or {}
        if reader.kind == "widget":
            message = data.get("messageAdded")
            if message is None:
                return
            reader.received.append(message["id"])
            self.latencies["widget"].append((received - stamp(message["createdAt"])) * 1000)
            return
        item = data.get("inboxUpdated")
        if item is None or item["lastMessage"] is None:
            return
        last = item["lastMessage"]
        reader.latest[item["id"]] = [last["id"], item["unreadCount"]]
        self.latencies["console"].append((received - stamp(last["createdAt"])) * 1000)

    async def live(self, kind: str, timeout: float) -> dict[str, Any]:
        """Wait until every socket of ``kind`` has had a frame; say how many have not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            waiting = sum(1 for r in self.readers if r.kind == kind and r.frames == 0)
            if waiting == 0:
                break
            await asyncio.sleep(0.1)
        return {"waiting": sum(1 for r in self.readers if r.kind == kind and r.frames == 0)}

    def phase(self) -> dict[str, Any]:
        for reader in self.readers:
            reader.received = []
        self.latencies = {"widget": [], "console": []}
        self.ended = dict.fromkeys(self.ended, 0)
        self.endings = []
        return {}

    async def quiet(self, still: float, timeout: float) -> dict[str, Any]:
        """Wait until no frame has come for ``still`` seconds (at most ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and time.monotonic() - self.last_frame < still:
            await asyncio.sleep(0.1)
        return {"quiet": time.monotonic() - self.last_frame >= still}

    def collect(self) -> dict[str, Any]:
        return {
            "widgets": [[r.subject, r.received] for r in self.readers if r.kind == "widget"],
            "consoles": [[r.subject, r.latest] for r in self.readers if r.kind == "console"],
            "latencies": self.latencies,
            "ended": self.ended,
            "endings": self.endings,
            "extensions": sorted(self.extensions),
        }

    async def close(self) -> dict[str, Any]:
        self.closing = True
        await asyncio.gather(*(socket.close() for socket in self.sockets), return_exceptions=True)
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.readers, self.sockets, self.tasks = [], [], []
        self.closing = False
        return {}


async def serve_sockets() -> None:
    loop = asyncio.get_running_loop()
    sockets = Sockets()
    limit = raise_file_limit()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        command = json.loads(line)
        match command["cmd"]:
            case "widgets" | "consoles" as what:
                kind = what.removesuffix("s")
                reply = await sockets.open(command["port"], kind, command["items"])
            case "live":
                reply = await sockets.live(command["kind"], command["timeout"])
            case "phase":
                reply = sockets.phase()
            case "quiet":
                reply = await sockets.quiet(command["still"], command["timeout"])
            case "collect":
                reply = sockets.collect()
            case "close":
                reply = await sockets.close()
            case other:
                raise ValueError(f"unknown command {other!r}")
        reply |= {"cpu": cpu_seconds(), "nofile": limit}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    await sockets.close()


async def send(config: dict[str, Any]) -> dict[str, Any]:
    """sendMessage as the conversation's customer (even sends) or service_role (odd ones)."""
    url = f"http://127.0.0.1:{config['port']}/graphql"
    customers: list[str] = config["customers"]  # token per conversation
    conversations: list[str] = config["conversations"]
    service = {"authorization": f"Bearer {config['service']}"}
    concurrency: int = config["concurrency"]
    rng = random.Random(config.get("seed", 24))
    sends: list[list[Any]] = []  # conversation, message id, createdAt, error, late s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:

        async def one(i: int, target: int, late: float) -> None:
            headers = service if i % 2 else {"authorization": f"Bearer {customers[target]}"}
            body = {"query": SEND, "variables": {"id": conversations[target], "t": f"bench {i}"}}
            try:
                response = await http.post(url, json=body, headers=headers)
                answer = response.json()
            except (httpx.HTTPError, ValueError) as error:
                sends.append([target, None, None, type(error).__name__, late])
                return
            if response.status_code != 200 or answer.get("errors"):
                codes = {
                    str((e.get("extensions") or {}).get("code", response.status_code))
                    for e in answer.get("errors") or [{}]
                }
                sends.append([target, None, None, "+".join(sorted(codes)), late])
                return
            sent = answer["data"]["sendMessage"]
            sends.append([target, sent["id"], stamp(sent["createdAt"]), "", late])

        started = time.monotonic()
        cpu = cpu_seconds()
        if targets := config.get("targets"):
            gate = asyncio.Semaphore(concurrency)

            async def gated(i: int, target: int) -> None:
                async with gate:
                    await one(i, target, 0.0)

            await asyncio.gather(*(gated(i, t) for i, t in enumerate(targets)))
        elif rate := config.get("rate"):
            gate = asyncio.Semaphore(concurrency)
            tasks = []

            async def scheduled(i: int, due: float) -> None:
                async with gate:
                    await one(i, rng.randrange(len(conversations)), time.monotonic() - due)

            for i in range(int(rate * config["seconds"])):
                due = started + i / rate
                if (wait := due - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                tasks.append(asyncio.create_task(scheduled(i, due)))
            await asyncio.gather(*tasks)
        else:
            deadline = started + config["seconds"]
            counter = iter(range(10**9))

            async def sender() -> None:
                while time.monotonic() < deadline:
                    await one(next(counter), rng.randrange(len(conversations)), 0.0)

            await asyncio.gather(*(sender() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    return {"sends": sends, "elapsed": elapsed, "cpu": cpu_seconds() - cpu}


def main() -> int:
    try:
        if sys.argv[1:] == ["sockets"]:
            asyncio.run(serve_sockets())
        elif sys.argv[1:] == ["send"]:
            result = asyncio.run(send(json.loads(sys.stdin.readline())))
            sys.stdout.write(json.dumps(result) + "\n")
        else:
            print("usage: python -m bench.realtime_load sockets|send", file=sys.stderr)
            return 2
    except KeyboardInterrupt:  # the bench's Ctrl-C reaches its whole process group
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
