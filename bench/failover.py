"""A primary failover under load, with pg_auto_failover: what users see, and what is lost.

For each of synchronous and asynchronous replication: a pg_auto_failover formation of its own
(a monitor and two data nodes, Debian's ``postgresql-15-auto-failover``, run as the
``postgres`` user on private ports with a private work directory, removed at the end; the
shared cluster on 5432 is never touched), `helpline serve` on the formation's multi-host URL
(``pg_autoctl show uri``), and a mixed load: customers opening their chat and sending messages
with ``clientMessageId``s, and subscribers on their conversations. After a few seconds the
primary is killed outright (its keeper and its PostgreSQL, SIGKILL and ``pg_ctl stop -m
immediate``: no hand-over); pg_auto_failover promotes the standby. The load runs on for a few
seconds more, then the invariants are checked on the new primary.

    make bench-failover   # python -m bench.failover [--before S] [--after S] [--workers N]

Loopback only; every loop is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psycopg2
import websockets

from bench.common import (
    ROOT,
    SECRET,
    Server,
    helpline_serve,
    machine,
    run_and_write,
    stop,
    subscribe_over_websocket,
    wait_until_serving,
)
from gql.ops.tokens import mint
from repo.config import DatabaseSettings
from repo.migrate import migrate

PG_BIN = Path("/usr/lib/postgresql/15/bin")
COMMAND_TIMEOUT_S = 120
FORMATION_TIMEOUT_S = 90
MAX_REQUESTS = 200_000  # per run, over every worker: a bound on top of the time bound
OPEN = "mutation { adminConversation { created conversation { id } } }"
SEND = """mutation ($id: UUID!, $text: String!, $key: String!) {
  sendMessage(conversationId: $id, content: $text, clientMessageId: $key) { id } }"""
REPLICATION = {True: "synchronous", False: "asynchronous"}
SUBSCRIBE = "subscription ($id: UUID!) { messageAdded(conversationId: $id) { content } }"


# --- the formation ----------------------------------------------------------------------------


class Formation:
    """A pg_auto_failover monitor and two nodes, as the postgres user, in ``work``."""

    def __init__(self, work: Path, base_port: int) -> None:
        self.work = work
        self.ports = {"monitor": base_port, "node1": base_port + 1, "node2": base_port + 2}
        self.keepers: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {
            "PATH": f"{PG_BIN}:/usr/bin:/bin",
            "XDG_CONFIG_HOME": str(work / "config"),
            "XDG_DATA_HOME": str(work / "share"),
            "XDG_RUNTIME_DIR": str(work / "run"),
            "HOME": str(work),
        }

    def autoctl(self, *args: str) -> str:
        done = subprocess.run(
            ["pg_autoctl", *args],
            env=self.env,
            user="postgres",
            group="postgres",
            capture_output=True,
            text=True,
            errors="replace",  # its messages are not always UTF-8
            timeout=COMMAND_TIMEOUT_S,
            check=False,
            cwd=self.work,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pg_autoctl {' '.join(args)}: {done.stderr.strip()[-2000:]}")
        return done.stdout

    def pgdata(self, name: str) -> str:
        return str(self.work / name)

    def run_keeper(self, name: str) -> None:
        log = (self.work / f"{name}.log").open("wb")
        self.keepers[name] = subprocess.Popen(
            ["pg_autoctl", "run", "--pgdata", self.pgdata(name)],
            env=self.env,
            user="postgres",
            group="postgres",
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.work,
            start_new_session=True,  # its own process group: the keeper and its PostgreSQL
        )

    def create(self, *, synchronous: bool) -> None:
        self.work.mkdir(parents=True)
        shutil.chown(self.work, "postgres", "postgres")
        common = ["--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl"]
        self.autoctl(
            "create", "monitor", "--pgdata", self.pgdata("monitor"),
            "--pgport", str(self.ports["monitor"]), *common,
        )  # fmt: skip
        self.run_keeper("monitor")
        monitor = f"postgres://autoctl_node@127.0.0.1:{self.ports['monitor']}/pg_auto_failover"
        for name in ("node1", "node2"):
            self.autoctl(
                "create", "postgres", "--pgdata", self.pgdata(name),
                "--pgport", str(self.ports[name]), "--name", name, "--dbname", "helpline",
                "--monitor", f"{monitor}?sslmode=disable", *common,
            )  # fmt: skip
            self.run_keeper(name)
            self.wait_states({"node1": "single"} if name == "node1" else None)
        self.wait_states({"node1": "primary", "node2": "secondary"})
        if not synchronous:  # the standby no longer counts for commits: asynchronous
            self.autoctl(
                "set", "node", "replication-quorum", "false", "--pgdata", self.pgdata("node2")
            )
        # pg_auto_failover names its standby in synchronous_standby_names = 'ANY 1 (...)'
        self.wait_replication({"sync", "quorum"} if synchronous else {"async"})

    def states(self) -> dict[str, tuple[str, str]]:
        """Each node's (reported, assigned) state, from the monitor."""
        rows = json.loads(
            self.autoctl("show", "state", "--json", "--pgdata", self.pgdata("monitor"))
        )
        return {
            row["nodename"]: (row["current_group_state"], row["assigned_group_state"])
            for row in rows
        }

    def wait_states(self, wanted: dict[str, str] | None) -> None:
        deadline = time.monotonic() + FORMATION_TIMEOUT_S
        while True:
            with contextlib.suppress(RuntimeError, json.JSONDecodeError):
                states = self.states()
                if wanted is None and states:
                    return
                if wanted and all(states.get(n, ("", ""))[0] == s for n, s in wanted.items()):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the formation did not reach {wanted}")
            time.sleep(0.5)

    def wait_replication(self, sync_states: set[str]) -> None:
        deadline = time.monotonic() + FORMATION_TIMEOUT_S
        while True:
            with contextlib.suppress(psycopg2.Error):
                rows = self.query("node1", "SELECT sync_state FROM pg_stat_replication")
                if len(rows) == 1 and rows[0][0] in sync_states:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"replication is not {' or '.join(sync_states)}")
            time.sleep(0.5)

    def uri(self) -> str:
        """``pg_autoctl show uri``'s multi-host URL for the formation, as the postgres role."""
        text = self.autoctl(
            "show", "uri", "--formation", "default", "--pgdata", self.pgdata("monitor")
        )
        uri = text.strip().splitlines()[-1].split("|")[-1].strip()
        return uri.replace("postgres://", "postgresql://postgres@", 1)

    def query(self, name: str, sql: str) -> list[tuple[Any, ...]]:
        conn = psycopg2.connect(
            host="127.0.0.1", port=self.ports[name], user="postgres", dbname="helpline",
            connect_timeout=3,
        )  # fmt: skip
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall()
        finally:
            conn.close()

    def kill(self, name: str) -> None:
        """The node is lost: its keeper and its PostgreSQL die at once, nothing handed over."""
        keeper = self.keepers.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(keeper.pid, signal.SIGKILL)
        keeper.wait(timeout=10)
        subprocess.run(
            [str(PG_BIN / "pg_ctl"), "stop", "-m", "immediate", "-D", self.pgdata(name)],
            user="postgres", group="postgres", capture_output=True, timeout=30, check=False,
        )  # fmt: skip

    def writable(self, name: str) -> bool:
        with contextlib.suppress(psycopg2.Error):
            return self.query(name, "SHOW transaction_read_only") == [("off",)] and self.query(
                name, "SELECT pg_is_in_recovery()"
            ) == [(False,)]
        return False

    def destroy(self) -> None:
        for keeper in self.keepers.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(keeper.pid, signal.SIGTERM)
        for keeper in self.keepers.values():
            try:
                keeper.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(keeper.pid, signal.SIGKILL)
                keeper.wait(timeout=10)
        for name in self.ports:  # whatever PostgreSQL outlived its keeper
            if (self.work / name / "postmaster.pid").exists():
                subprocess.run(
                    [str(PG_BIN / "pg_ctl"), "stop", "-m", "immediate", "-D", self.pgdata(name)],
                    user="postgres", group="postgres", capture_output=True, timeout=30,
                    check=False,
                )  # fmt: skip
        shutil.rmtree(self.work, ignore_errors=True)


@contextlib.contextmanager
def formation(synchronous: bool, base_port: int) -> Iterator[Formation]:
    work = Path("/var/lib/postgresql") / f"helpline-failover-{os.getpid()}-{int(synchronous)}"
    shutil.rmtree(work, ignore_errors=True)
    made = Formation(work, base_port)
    try:
        made.create(synchronous=synchronous)
        yield made
    finally:
        made.destroy()


# --- the load ---------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the load was told, by its clients."""

    opened: dict[str, str] = field(default_factory=dict)  # customer -> conversation (acked)
    sent: list[tuple[str, str]] = field(default_factory=list)  # (conversation, content) acked
    acked_at: list[float] = field(default_factory=list)
    acked_sent_at: list[float] = field(default_factory=list)  # when each acknowledged one left
    failures: list[tuple[int, str | None, tuple[str, ...]]] = field(default_factory=list)
    transport_errors: int = 0
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def customer_worker(
    url: str, customers: list[str], tally: Tally, stop_at: threading.Event, seed: int
) -> None:
    """Open each customer's chat, then send messages in it; record what was acknowledged."""
    rng = random.Random(seed)
    tokens = {c: mint(SECRET, role="authenticated", sub=c, expires_in=3600) for c in customers}
    conversations: dict[str, str] = {}
    deadline = time.monotonic() + 600
    with httpx.Client(timeout=15) as http:
        n = 0
        while (
            not stop_at.is_set() and time.monotonic() < deadline and tally.requests < MAX_REQUESTS
        ):
            customer = rng.choice(customers)
            if customer in conversations:
                n += 1
                text = f"{customer[:8]} {n}"
                body = {"query": SEND, "variables": {"id": conversations[customer], "text": text,
                                                      "key": uuid.uuid4().hex}}  # fmt: skip
            else:
                body = {"query": OPEN}
            sent_at = time.monotonic()
            try:
                response = http.post(
                    url, json=body, headers={"authorization": f"Bearer {tokens[customer]}"}
                )
                data = response.json()
            except (httpx.TransportError, ValueError):
                with tally.lock:
                    tally.transport_errors += 1
                time.sleep(0.05)
                continue
            with tally.lock:
                tally.requests += 1
                if response.status_code == 200 and "errors" not in data:
                    tally.acked_at.append(time.monotonic())
                    tally.acked_sent_at.append(sent_at)
                    if "adminConversation" in data["data"]:
                        conversation = data["data"]["adminConversation"]["conversation"]["id"]
                        conversations[customer] = conversation
                        tally.opened[customer] = conversation
                    else:
                        tally.sent.append((conversations[customer], text))
                else:
                    codes = tuple(
                        e.get("extensions", {}).get("code") for e in data.get("errors", [])
                    )
                    tally.failures.append(
                        (response.status_code, response.headers.get("retry-after"), codes)
                    )
            if response.status_code != 200:
                time.sleep(0.05)


async def subscriber(
    url: str, token: str, conversation: str, heard: list[str], done: asyncio.Event
) -> None:
    """One customer's messageAdded subscription, reconnecting if its socket drops."""
    ws_url = url.replace("http", "ws", 1)
    while not done.is_set():
        try:
            async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
                await subscribe_over_websocket(socket, token, SUBSCRIBE, {"id": conversation})
                while not done.is_set():
                    with contextlib.suppress(TimeoutError):
                        frame = json.loads(await asyncio.wait_for(socket.recv(), 0.5))
                        if frame["type"] == "ping":
                            await socket.send(json.dumps({"type": "pong"}))
                        elif frame["type"] == "next" and "data" in frame["payload"]:
                            heard.append(frame["payload"]["data"]["messageAdded"]["content"])
                        elif frame["type"] in ("error", "complete"):
                            heard.append(f"!{frame['type']}")
                            break
        except (OSError, websockets.WebSocketException):
            heard.append("!reconnect")
            await asyncio.sleep(0.5)


# --- one run ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    replication: str
    promoted_after_s: float  # the primary's loss to the new primary accepting writes
    first_ack_after_loss_s: float
    first_ack_after_promotion_s: float
    acked: int
    failed: int
    failure_kinds: dict[str, int]
    transport_errors: int
    lost_conversations: int
    lost_messages: int
    duplicate_conversations: int
    subscribers: int
    gaps: int
    duplicates: int
    subscriptions_ended: int


def run_once(synchronous: bool, args: argparse.Namespace, out: Path, base_port: int) -> Outcome:
    replication = REPLICATION[synchronous]
    with formation(synchronous, base_port) as pgaf:
        url = pgaf.uri()
        migrate(DatabaseSettings(database_url=url))
        customers = seed(pgaf, args.customers)
        port = base_port + 10
        env = {
            **os.environ, "DATABASE_URL": url, "LISTEN_DATABASE_URL": url, "JWT_SECRET": SECRET,
            "APP_ENV": "production", "METRICS_UNPROTECTED": "true", "ACCESS_LOG": "errors",
            "DB_CONNECT_TIMEOUT_SECONDS": "2", "REQUEST_TIMEOUT_SECONDS": "5", "DB_POOL_SIZE": "10",
        }  # fmt: skip
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        log_path = out / f"helpline-{replication}.log"
        with log_path.open("wb") as log:
            server = subprocess.Popen(
                helpline_serve(port, args.workers),
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until_serving(f"http://127.0.0.1:{port}/live", server, log_path)
            outcome = load_and_fail_over(
                pgaf, Server("helpline", port, server, log_path), customers, args, replication
            )
        finally:
            stop(server)
        return outcome


def seed(pgaf: Formation, count: int) -> list[str]:
    admins = [str(uuid.uuid4()) for _ in range(3)]
    customers = [str(uuid.uuid4()) for _ in range(count)]
    conn = psycopg2.connect(pgaf.uri())
    with conn, conn.cursor() as cursor:
        for i, user in enumerate(admins + customers):
            cursor.execute(
                "INSERT INTO users (id, email, full_name) VALUES (%s, %s, %s)",
                (user, f"{user}@failover.example", f"User {i}"),
            )
        cursor.execute("UPDATE profiles SET is_admin = true WHERE id = ANY(%s::uuid[])", (admins,))
    conn.close()
    return customers


def load_and_fail_over(
    pgaf: Formation,
    server: Server,
    customers: list[str],
    args: argparse.Namespace,
    replication: str,
) -> Outcome:
    url = f"{server.base}/graphql"
    tally = Tally()
    stop_load = threading.Event()
    shards = [customers[i :: args.clients] for i in range(args.clients)]
    workers = [
        threading.Thread(
            target=customer_worker, args=(url, shard, tally, stop_load, i), daemon=True
        )
        for i, shard in enumerate(shards)
    ]
    for worker in workers:
        worker.start()
    time.sleep(2)  # the first chats are open: subscribe to some of them
    with tally.lock:
        watched = list(tally.opened.items())[: args.subscribers]
    heard: dict[str, list[str]] = {conversation: [] for _, conversation in watched}

    async def subscribers_and_failover() -> tuple[float, float]:
        done = asyncio.Event()
        tasks = [
            asyncio.create_task(
                subscriber(
                    url,
                    mint(SECRET, role="authenticated", sub=customer, expires_in=3600),
                    conversation,
                    heard[conversation],
                    done,
                )
            )
            for customer, conversation in watched
        ]
        await asyncio.sleep(args.before)
        primary = next(n for n, (state, _) in pgaf.states().items() if state == "primary")
        standby = "node2" if primary == "node1" else "node1"
        lost_at = time.monotonic()
        await asyncio.to_thread(pgaf.kill, primary)
        deadline = lost_at + FORMATION_TIMEOUT_S
        while not await asyncio.to_thread(pgaf.writable, standby):
            if time.monotonic() > deadline:
                raise TimeoutError("pg_auto_failover promoted no standby")
            await asyncio.sleep(0.1)
        promoted_at = time.monotonic()
        await asyncio.sleep(args.after)
        stop_load.set()
        await asyncio.gather(*(asyncio.to_thread(w.join, 30) for w in workers))
        await asyncio.sleep(3)  # subscribers hear the last messages
        done.set()
        await asyncio.gather(*tasks)
        return lost_at, promoted_at

    lost_at, promoted_at = asyncio.run(subscribers_and_failover())
    primary = next(n for n in ("node1", "node2") if pgaf.writable(n))
    stored_conversations = {
        str(c): str(cid)
        for c, cid in pgaf.query(primary, "SELECT customer_id, id FROM conversations")
    }
    per_customer = dict(
        pgaf.query(primary, "SELECT customer_id::text, count(*) FROM conversations GROUP BY 1")
    )
    stored_messages = set(
        pgaf.query(primary, "SELECT conversation_id::text, content FROM messages")
    )
    gaps = duplicates = ended = 0
    for conversation, got in heard.items():
        ended += sum(1 for h in got if h in ("!error", "!complete"))
        contents = [h for h in got if not h.startswith("!")]
        rows = pgaf.query(
            primary,
            "SELECT content FROM messages "
            f"WHERE conversation_id = '{conversation}' ORDER BY created_at, id",
        )
        expected = [c for (c,) in rows if not c.startswith("Hi")]
        first = expected.index(contents[0]) if contents and contents[0] in expected else 0
        expected = expected[first:]
        duplicates += len(contents) - len(set(contents))
        gaps += len(set(expected) - set(contents))
    kinds: dict[str, int] = {}
    for status, retry, codes in tally.failures:
        after = f"Retry-After {retry}" if retry else "no Retry-After"
        key = f"{status} {after} {','.join(c or '?' for c in codes)}"
        kinds[key] = kinds.get(key, 0) + 1
    # the first write sent after the loss that succeeded (one in flight may finish before it)
    after_loss = [
        t for t, sent in zip(tally.acked_at, tally.acked_sent_at, strict=True) if sent > lost_at
    ]
    after_promotion = [t for t in tally.acked_at if t > promoted_at]
    return Outcome(
        replication=replication,
        promoted_after_s=promoted_at - lost_at,
        first_ack_after_loss_s=(min(after_loss) - lost_at) if after_loss else float("nan"),
        first_ack_after_promotion_s=(min(after_promotion) - promoted_at)
        if after_promotion
        else float("nan"),
        acked=len(tally.acked_at),
        failed=len(tally.failures),
        failure_kinds=kinds,
        transport_errors=tally.transport_errors,
        lost_conversations=sum(1 for c in tally.opened if c not in stored_conversations),
        lost_messages=sum(1 for m in tally.sent if m not in stored_messages),
        duplicate_conversations=sum(1 for n in per_customer.values() if n > 1),
        subscribers=len(heard),
        gaps=gaps,
        duplicates=duplicates,
        subscriptions_ended=ended,
    )


# --- report -----------------------------------------------------------------------------------


def report(outcomes: list[Outcome], args: argparse.Namespace) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Failover: a primary lost under load (pg_auto_failover)",
        "",
        f"Measured {when} on {machine()}, by `make bench-failover` (`python -m bench.failover "
        f"--clients {args.clients} --customers {args.customers} --subscribers {args.subscribers} "
        f"--before {args.before:g} --after {args.after:g} --workers {args.workers}`). Per row: a "
        "fresh pg_auto_failover 2.0 formation (monitor and two PostgreSQL 15 nodes on private "
        "ports), `helpline serve` on `pg_autoctl show uri`'s multi-host URL "
        "(`target_session_attrs=read-write`) for the pool and the listener, and a mixed load: "
        f"{args.clients} clients opening customers' chats and sending messages, "
        f"{args.subscribers} `messageAdded` subscribers. After {args.before:g} s the primary is "
        "killed outright (SIGKILL to its keeper's process group, `pg_ctl stop -m immediate`); "
        "pg_auto_failover promotes the standby (it first waits out its `demote_timeout`, 30 s, "
        f"since it cannot tell a dead primary from a cut-off one); the load runs {args.after:g} s "
        "more. Counted on the new primary afterwards.",
        "",
        "| replication | loss → promoted | loss → first write | promoted → first write | "
        "requests acknowledged | failed | failures were | lost first contacts | lost messages "
        "| two conversations for a customer | subscriber gaps | duplicates | subscriptions ended |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        kinds = "; ".join(f"{n}: {k}" for k, n in sorted(o.failure_kinds.items())) or "none"
        if o.transport_errors:
            kinds += f"; {o.transport_errors} transport errors (a finding)"
        lines.append(
            f"| {o.replication} | {o.promoted_after_s:.1f} s | {o.first_ack_after_loss_s:.1f} s | "
            f"{o.first_ack_after_promotion_s:.2f} s | {o.acked:,} | {o.failed:,} | {kinds} | "
            f"{o.lost_conversations} | {o.lost_messages} | {o.duplicate_conversations} | "
            f"{o.gaps} | {o.duplicates} | {o.subscriptions_ended} |"
        )
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=8, help="load threads")
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--subscribers", type=int, default=8)
    parser.add_argument("--before", type=float, default=5.0, help="seconds of load before the loss")
    parser.add_argument("--after", type=float, default=5.0, help="seconds of load after promotion")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--replication", choices=["both", "synchronous", "asynchronous"], default="both"
    )
    parser.add_argument("--write", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("pg_autoctl") is None:
        print(
            "bench-failover: needs root and pg_autoctl (make bench-failover installs it)",
            file=sys.stderr,
        )
        return 2
    out = Path("/tmp") / f"helpline-failover-{os.getpid()}"
    out.mkdir(parents=True, exist_ok=True)
    print(f"logs in {out}", flush=True)

    def run() -> str:
        outcomes = []
        chosen = [s for s in (True, False) if args.replication in ("both", REPLICATION[s])]
        for i, synchronous in enumerate(chosen):
            outcome = run_once(synchronous, args, out, 56100 + 20 * i + os.getpid() % 40 * 50)
            print(outcome, flush=True)
            outcomes.append(outcome)
        return report(outcomes, args)

    return run_and_write(run, Path(args.write))


if __name__ == "__main__":
    sys.exit(main())
