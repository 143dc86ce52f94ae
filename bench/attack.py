"""A stranger's attacks against one process (issue #23), while a customer chats.

One `helpline serve` process (production settings, PostgreSQL on loopback) is attacked for
``--seconds`` by four anonymous attackers at once, each from a loopback address of its own,
while a customer on 127.0.0.1 chats (the newest page read every 50 ms, a message every 30th turn,
within the default allowance of 60 a minute) and a
probe asks ``/live`` twice a second:

- headers (127.0.0.2): four connections at a time, each sending a 64 MB header on ``GET /live``;
- documents (127.0.0.3): four clients, each POSTing 18 KB a second of a document of 390
  repeated selections (it once cost 1.2-1.8 s of CPU to validate);
- caches (127.0.0.4): distinct 8 KB documents of repeated names, to fill the parse, validation
  and plan caches with documents that cost megabytes each once parsed;
- connections (127.0.0.5): 2,999 TCP connections that never send a request, renewed as soon as
  the server closes them, and 20 bodies (60 KB, under the body limit) trickled a byte a second.

Before the attack the customer chats alone for ``--quiet`` seconds: the baseline of the same run.
Reported: the customer's latency (p50, p99) quiet and attacked, failed requests, /live probes
answered, the process's peak RSS, and what each attacker met.

    python -m bench.attack [--seconds 60] [--quiet 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from uuid import uuid4

import httpx2 as httpx

from bench.common import (
    METRICS_TOKEN,
    ROOT,
    SECRET,
    add_admin,
    bench_database,
    helpline_serve,
    machine,
    percentile,
    rss_mib,
    seeding,
    stop,
    wait_until_serving,
    write_section,
)
from gql.ops.tokens import mint
from repo.models import User

ATTACKERS = {"headers": "127.0.0.2", "documents": "127.0.0.3", "caches": "127.0.0.4"}
IDLE_ADDRESS = "127.0.0.5"
CUSTOMER_ADDRESS = "127.0.0.1"
IDLE_CONNECTIONS = 2999
SLOW_BODIES = 20
SLOW_BODY_BYTES = 60_000  # under MAX_BODY_BYTES: refused only by the body's deadline
HEADER_BYTES = 64 * 1024 * 1024
CHUNK = 1024 * 1024
DOCUMENT_RATE_BYTES = 18 * 1024
CACHE_RATE_BYTES = 10 * 8192  # ten new 8 KB documents a second
TARGET_P99_MS = 100
SEND_EVERY = 30  # turns: a message every 1.5 s or more, under the default 60 a minute
TARGET_RSS_MIB = 400

OPEN = "mutation { adminConversation { conversation { id } } }"
SEND = (
    "mutation ($c: UUID!, $t: String!) "
    "{ sendMessage(conversationId: $c, content: $t) { id createdAt } }"
)
PAGE = (
    "query ($c: UUID!) { conversation(id: $c) "
    "{ messages(first: 20) { edges { node { id content sender { name } } } } } }"
)


def repeated_selections(count: int = 390) -> str:
    """A document of ``count`` repeated selections of one field (about 20 KB)."""
    return "{ " + " ".join(["integrity { orphanedConversationCount }"] * count) + " }"


def distinct_names(index: int, size: int = 8192) -> str:
    """An 8 KB document of repeated names, distinct per ``index`` (each a cache entry)."""
    head = f"query Q{index} {{ integrity {{ "
    body = "orphanedConversationCount " * ((size - len(head) - 4) // 26)
    return head + body + "} }"


@dataclass
class Tally:
    """What one attacker met: status lines (or how the connection ended), counted."""

    outcomes: Counter[str] = field(default_factory=Counter)

    def add(self, outcome: str) -> None:
        self.outcomes[outcome] += 1

    def line(self) -> str:
        return ", ".join(f"{what} {n}" for what, n in self.outcomes.most_common()) or "nothing"


async def _open(port: int, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0), limit=2**16)


async def _status(reader: asyncio.StreamReader) -> str:
    line = await reader.readline()
    return line.decode("latin-1").split(" ", 2)[1] if line.startswith(b"HTTP/") else "closed"


async def big_headers(port: int, until: float, tally: Tally, *, flood: bool) -> None:
    """One connection at a time: GET /live with a 64 MB Authorization header, once a second
    (``flood``: again as soon as the last one ended)."""
    chunk = b"a" * CHUNK
    while time.monotonic() < until:
        if not flood:
            await asyncio.sleep(1.0)
        try:
            reader, writer = await _open(port, ATTACKERS["headers"])
        except OSError:
            tally.add("refused")
            await asyncio.sleep(0.1)
            continue
        try:
            writer.write(b"GET /live HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ")
            for _ in range(HEADER_BYTES // CHUNK):
                writer.write(chunk)
                await writer.drain()
            writer.write(b"\r\n\r\n")
            await writer.drain()
            tally.add(await asyncio.wait_for(_status(reader), 10))
        except (OSError, TimeoutError):
            tally.add("cut")
        finally:
            writer.close()


async def post_documents(
    port: int, source: str, documents: object, until: float, tally: Tally, rate: int | None
) -> None:
    """POST each document anonymously (at ``rate`` bytes a second, if given) until ``until``."""
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(transport=transport, timeout=30) as client:
        for document in documents:  # type: ignore[attr-defined]
            if time.monotonic() >= until:
                return
            started = time.monotonic()
            body = json.dumps({"query": document})
            try:
                response = await client.post(
                    f"http://127.0.0.1:{port}/graphql",
                    content=body,
                    headers={"content-type": "application/json"},
                )
                tally.add(f"{response.status_code} {_code(response)}")
            except httpx.HTTPError as exc:
                tally.add(type(exc).__name__)
            if rate is not None:
                await asyncio.sleep(max(0.0, len(body) / rate - (time.monotonic() - started)))


async def idle_connections(port: int, until: float, tally: Tally) -> None:
    """Hold IDLE_CONNECTIONS connections that never send; renew each the server closes."""

    async def hold() -> None:
        while time.monotonic() < until:
            try:
                reader, writer = await _open(port, IDLE_ADDRESS)
            except OSError:
                tally.add("connect failed")
                await asyncio.sleep(0.5)
                continue
            try:
                remaining = until - time.monotonic()
                tally.add(await asyncio.wait_for(_status(reader), max(0.1, remaining)))
            except (OSError, TimeoutError):
                tally.add("held to the end")
            finally:
                writer.close()

    async def trickle() -> None:
        while time.monotonic() < until:
            try:
                reader, writer = await _open(port, IDLE_ADDRESS)
                writer.write(
                    b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % SLOW_BODY_BYTES
                )
                while time.monotonic() < until and not reader.at_eof():
                    writer.write(b" ")
                    await writer.drain()
                    with contextlib.suppress(TimeoutError):
                        line = await asyncio.wait_for(reader.readline(), 1)
                        if line:
                            tally.add("slow body answered " + line.decode().split(" ", 2)[1])
                            break
                writer.close()
            except OSError:
                tally.add("slow body cut")
                await asyncio.sleep(0.5)

    await asyncio.gather(
        *(hold() for _ in range(IDLE_CONNECTIONS)), *(trickle() for _ in range(SLOW_BODIES))
    )


async def attack(port: int, seconds: float, *, flood: bool) -> dict[str, str]:
    """Every attacker at once for ``seconds``; what each met. Paced as the issue measured them
    (rounds of 64 MB headers a second apart, 18 KB/s of costly documents per client, ten new
    8 KB documents a second), or, with ``flood``, each as fast as it is answered."""
    until = time.monotonic() + seconds
    tallies = {name: Tally() for name in ("headers", "documents", "caches", "connections")}
    expensive = repeated_selections()
    forever = iter(lambda: expensive, None)
    await asyncio.gather(
        *(big_headers(port, until, tallies["headers"], flood=flood) for _ in range(4)),
        *(
            post_documents(
                port,
                ATTACKERS["documents"],
                forever,
                until,
                tallies["documents"],
                None if flood else DOCUMENT_RATE_BYTES,
            )
            for _ in range(4)
        ),
        post_documents(
            port,
            ATTACKERS["caches"],
            (distinct_names(i) for i in range(10**9)),
            until,
            tallies["caches"],
            None if flood else CACHE_RATE_BYTES,
        ),
        idle_connections(port, until, tallies["connections"]),
    )
    return {name: tally.line() for name, tally in tallies.items()}


@dataclass
class Chat:
    latencies_ms: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    probes: int = 0
    probes_failed: int = 0
    peak_rss_mib: float = 0.0


async def chat(base: str, token: str, seconds: float, pid: int) -> Chat:
    """A customer on 127.0.0.1 reading the newest page every 50 ms and writing a message every
    SEND_EVERY turns (within RATE_LIMIT_MESSAGES_PER_MINUTE's default); /live probed twice a
    second; the server's RSS sampled."""
    result = Chat()
    headers = {"authorization": f"Bearer {token}"}
    transport = httpx.AsyncHTTPTransport(local_address=CUSTOMER_ADDRESS)
    async with httpx.AsyncClient(base_url=base, transport=transport, timeout=10) as client:
        opened = await client.post("/graphql", json={"query": OPEN}, headers=headers)
        conversation = opened.json()["data"]["adminConversation"]["conversation"]["id"]
        until = time.monotonic() + seconds

        async def talk() -> None:
            turn = 0
            while time.monotonic() < until:
                turn += 1
                query, variables = (
                    (SEND, {"c": conversation, "t": f"message {turn}"})
                    if turn % SEND_EVERY == 1
                    else (PAGE, {"c": conversation})
                )
                started = time.perf_counter()
                try:
                    response = await client.post(
                        "/graphql", json={"query": query, "variables": variables}, headers=headers
                    )
                    if response.status_code != 200 or _code(response) is not None:
                        result.failures[f"{response.status_code} {_code(response)}"] += 1
                except httpx.HTTPError as exc:
                    result.failures[type(exc).__name__] += 1
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(0.05)  # 50 ms between turns

        async def probe() -> None:
            while time.monotonic() < until:
                result.probes += 1
                try:
                    live = await client.get("/live", timeout=1)
                    result.probes_failed += live.status_code != 200
                except httpx.HTTPError:
                    result.probes_failed += 1
                result.peak_rss_mib = max(result.peak_rss_mib, rss_mib(pid))
                await asyncio.sleep(0.5)

        await asyncio.gather(talk(), probe())
    return result


def seed(url: str) -> str:
    """A migrated database with an admin and one customer; the customer's id."""
    with seeding(url):
        add_admin("ada@example.com", "Ada")
        customer = uuid4()
        User.insert(id=customer, email="cleo@example.com", full_name="Cleo").execute()
    return str(customer)


def attacker_main(port: int, seconds: float, *, flood: bool) -> int:
    """The attackers' own process (so their CPU is not the customer's): print what they met."""
    print(json.dumps(asyncio.run(attack(port, seconds, flood=flood))))
    return 0


@dataclass
class Round:
    """The customer's chat while the attackers ran, and what the attackers met."""

    name: str
    chat: Chat
    met: dict[str, str]


def run(seconds: float, quiet: float) -> str:
    """The customer alone, then attacked at the issue's pace, then by a flood; one server."""
    with bench_database("helpline_attack") as url:
        customer = seed(url)
        token = mint(SECRET, role="authenticated", sub=customer)  # type: ignore[arg-type]
        port = _free_port()
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"helpline-attack-{os.getpid()}.log"
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "JWT_SECRET": SECRET,
            "APP_ENV": "production",
            "METRICS_TOKEN": METRICS_TOKEN,
            "ACCESS_LOG": "errors",
        }
        with log.open("wb") as out:
            server = subprocess.Popen(
                helpline_serve(port, 1), env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_serving(f"{base}/live", server, log)
            calm = asyncio.run(chat(base, token, quiet, server.pid))
            rounds = [
                _attacked(name, base, token, port, seconds, server.pid, flood=flood)
                for name, flood in (("attacked", False), ("flooded", True))
            ]
        finally:
            stop(server)
        tracebacks = log.read_text(errors="replace").count("Traceback")
    return _section(seconds, quiet, calm, rounds, tracebacks)


def _attacked(
    name: str, base: str, token: str, port: int, seconds: float, pid: int, *, flood: bool
) -> Round:
    command = [sys.executable, "-m", "bench.attack", "--attacker", str(port)]
    command += ["--seconds", str(seconds), *(["--flood"] if flood else [])]
    attackers = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE)
    chatted = asyncio.run(chat(base, token, seconds, pid))
    out_text, _ = attackers.communicate(timeout=seconds + 120)
    return Round(name, chatted, json.loads(out_text.decode().strip().splitlines()[-1]))


def _section(seconds: float, quiet: float, calm: Chat, rounds: list[Round], tracebacks: int) -> str:
    def row(name: str, chat: Chat) -> str:
        lat = chat.latencies_ms
        failures = ", ".join(f"{k} {v}" for k, v in chat.failures.items()) or "none"
        return (
            f"| {name} | {len(lat)} | {percentile(lat, 0.5):.1f} | {percentile(lat, 0.99):.1f} | "
            f"{percentile(lat, 0.99) / max(percentile(calm.latencies_ms, 0.99), 0.001):.1f}x | "
            f"{failures} | {chat.probes - chat.probes_failed} of {chat.probes} | "
            f"{chat.peak_rss_mib:.0f} |"
        )

    def held(chat: Chat) -> str:
        return (
            "held"
            if percentile(chat.latencies_ms, 0.99) < TARGET_P99_MS
            and chat.peak_rss_mib < TARGET_RSS_MIB
            and chat.probes_failed == 0
            and not chat.failures
            else "missed"
        )

    rows = "\n".join(row(r.name, r.chat) for r in rounds)
    verdicts = "; ".join(f"{r.name}: **{held(r.chat)}**" for r in rounds)
    attackers = "\n".join(
        f"| {name} | {' | '.join(r.met[name] for r in rounds)} |" for name in rounds[0].met
    )
    return f"""## Issue #23: a stranger's attacks against one process

`python -m bench.attack` (in `make bench`): one `helpline serve` process (1 worker,
`APP_ENV=production`, PostgreSQL on loopback; {machine()}). A customer on 127.0.0.1 reads the
newest page every 50 ms and sends a message every {SEND_EVERY}th turn (within the default allowance
of `RATE_LIMIT_MESSAGES_PER_MINUTE`; before issue #25 every other turn was a send, so earlier
figures are not comparable) and `/live` is probed twice a second:
alone for {quiet:g} s (the baseline, same run), then twice for {seconds:g} s while four anonymous
attackers run at once from a separate process, each from its own loopback address:

- headers (127.0.0.2): four connections each sending a 64 MB header on `GET /live`;
- documents (127.0.0.3): four clients each sending a 390-repeated-selection document;
- caches (127.0.0.4): distinct 8 KB documents of repeated names;
- connections (127.0.0.5): {IDLE_CONNECTIONS:,} idle connections renewed as soon as closed, and
  {SLOW_BODIES} bodies of {SLOW_BODY_BYTES:,} bytes trickled a byte a second.

*attacked*: at the pace the review measured (a 64 MB header per connection a second, 18 KB/s of
documents per client, ten new 8 KB documents a second); *flooded*: each attacker as fast as it is
answered (what a per-caller quota, not a bound, must stop). Default limits (README, "Limits").
The attackers' own process shares the machine's two cores with the server and PostgreSQL.

| customer | requests | p50 ms | p99 ms | p99 vs alone | failed | `/live` answered | peak RSS MiB |
|---|---|---|---|---|---|---|---|
{row("alone", calm)}
{rows}

Targets (p99 under {TARGET_P99_MS} ms, RSS under {TARGET_RSS_MIB} MiB, every probe answered, no
failed request): {verdicts}. Tracebacks in the server's log over the whole run: {tracebacks}.

What each attacker met (status, or how its connection ended):

| attacker | {" | ".join(r.name for r in rounds)} |
|---|{"---|" * len(rounds)}
{attackers}
"""


def _code(response: httpx.Response) -> str | None:
    """The first error's code, "not JSON" for a body that is not GraphQL's, None: no error."""
    try:
        errors = response.json().get("errors")
    except ValueError:
        return "not JSON"
    return str(errors[0].get("extensions", {}).get("code")) if errors else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--quiet", type=float, default=20)
    parser.add_argument(
        "--print-only", action="store_true", help="print the section, leave BENCHMARKS.md"
    )
    parser.add_argument("--attacker", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--flood", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attacker:
        return attacker_main(args.attacker, args.seconds, flood=args.flood)
    section = run(args.seconds, args.quiet)
    print(section)
    if not args.print_only:
        write_section(ROOT / "BENCHMARKS.md", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
