"""The soak (issue #8): mixed load on Helpline for minutes, with database faults injected.

Creates a private PostgreSQL cluster with Debian's tools (``pg_createcluster 15 helpline-soak``
on its own port, trust on 127.0.0.1 only), never touching the machine's shared one; migrates
it with ``helpline db migrate``, seeds it (bench.api's COPY seed), serves it with
``helpline serve --workers N`` and loads it from locust (``bench/soak_load.py``, headless, a
separate process). Every ``--fault-every`` seconds it injects a fault: the app's backends are
terminated (``pg_terminate_backend`` on ``application_name = 'helpline'``), except once,
mid-run, when the whole cluster is stopped and started again. At the end it checks the data
with the post-mortem's SQL and ``helpline integrity check``, writes its section of
BENCHMARKS.md and drops the cluster (also on failure or Ctrl-C).

    make bench-soak   # python -m bench.soak [--duration 300] [--fault-every 30] [--port 5499]

Loopback only; every wait is bounded. Needs root (pg_createcluster, the cluster's files belong
to the postgres user). What the run leaves for reading, in ``--out`` (a new directory under
/tmp by default): requests.csv (every request), findings.jsonl, faults.json, invariants.json,
helpline.log (ACCESS_LOG=errors: a line per failed request), postgresql.log, locust's CSV stats.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import csv
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import graphql
import psycopg2

from bench.api import Dataset, seed, serving, token
from bench.common import (
    ROOT,
    SECRET,
    Server,
    helpline_serve,
    percentile,
    stop,
    write_marked_section,
)
from gql.graphql.settings import DEFAULT_WELCOME_MESSAGE

VERSION, NAME = "15", "helpline-soak"
SHARED_PORT = 5432
CONF_DIR = Path("/etc/postgresql") / VERSION / NAME
DATABASE = "helpline_soak"
POOL_SIZE = 20
APP_NAME = "helpline"  # repo.db.postgres_connect_kwargs: the app's application_name
TERMINATE = (
    f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{APP_NAME}'"
)
COMMAND_TIMEOUT_S = 120
READY_TIMEOUT_S = 60
FIRST_CONTACT_SHARE = 0.2  # bench/soak_load.py's task weights: 5 hot, 2 first, 2 send, 1 list
OK, UNAVAILABLE = "", "SERVICE_UNAVAILABLE"
CLEAN_S = 1.0  # recovered: the first success after which a whole second has no failure
HBA = f"""# {NAME}: written by bench/soak.py for its private cluster, dropped at the end of the run.
local   all   postgres                  peer
host    all   all        127.0.0.1/32   trust
"""
CONF = """
# bench/soak.py: loopback only
listen_addresses = '127.0.0.1'
max_connections = 100
"""


# --- the private cluster --------------------------------------------------------------------


def pg(*command: str) -> str:
    """Run one of Debian's PostgreSQL cluster tools; its output, or an error with its stderr."""
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def clusters() -> list[tuple[str, str, int]]:
    """(version, name, port) of every cluster on the machine."""
    rows = [line.split() for line in pg("pg_lsclusters", "--no-header").splitlines()]
    return [(row[0], row[1], int(row[2])) for row in rows if len(row) >= 3]


@dataclass
class Cluster:
    """The soak's own PostgreSQL cluster, on a port of its own."""

    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def create(self) -> None:
        pg("pg_createcluster", VERSION, NAME, "-p", str(self.port), "--start-conf", "manual")
        (CONF_DIR / "pg_hba.conf").write_text(HBA)
        with (CONF_DIR / "postgresql.conf").open("a") as conf:  # the last setting wins
            conf.write(CONF)
        self.start()
        with contextlib.closing(self.connect("postgres")) as conn:
            conn.autocommit = True
            conn.cursor().execute(f"CREATE DATABASE {DATABASE}")

    def start(self) -> float:
        """Start the cluster; returns the wall-clock moment it first accepted a connection."""
        command = ["pg_ctlcluster", "--skip-systemctl-redirect", VERSION, NAME, "start"]
        # pg_ctlcluster returns a second or two after PostgreSQL accepts connections: poll.
        starting = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            ready = self.wait_ready(starting)
        finally:
            output, _ = starting.communicate(timeout=COMMAND_TIMEOUT_S)
        if starting.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: {output.strip()}")
        return ready

    def stop(self) -> None:
        pg("pg_ctlcluster", "--skip-systemctl-redirect", VERSION, NAME, "stop", "-m", "fast")

    def wait_ready(self, starting: subprocess.Popen[str]) -> float:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                self.connect("postgres").close()
                return time.time()
            except psycopg2.OperationalError:
                if time.monotonic() > deadline or starting.poll() not in (None, 0):
                    raise
                time.sleep(0.05)

    def connect(self, database: str = DATABASE) -> Any:
        return psycopg2.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            dbname=database,
            application_name="helpline-soak-driver",
            connect_timeout=5,
        )

    def version(self) -> str:
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cursor:
            cursor.execute("SHOW server_version")
            return str(cursor.fetchone()[0]).split()[0]

    def log(self) -> Path:
        return Path("/var/log/postgresql") / f"postgresql-{VERSION}-{NAME}.log"


def check_port(port: int) -> None:
    """Refuse the shared cluster's port, another cluster's, and any port already listening."""
    if port == SHARED_PORT:
        raise SystemExit(f"soak: --port {port} is the shared cluster's; pick another (e.g. 5499)")
    for version, name, used in clusters():
        if used == port and (version, name) != (VERSION, NAME):
            raise SystemExit(f"soak: --port {port} belongs to cluster {version}/{name}")
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as PostgreSQL binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise SystemExit(f"soak: port {port} is in use on 127.0.0.1; pick another") from None


def drop_cluster() -> None:
    """Drop the soak's cluster if it exists: only ever 15/helpline-soak."""
    if (VERSION, NAME) in {(v, n) for v, n, _ in clusters()}:
        pg("pg_dropcluster", "--stop", VERSION, NAME)
    elif CONF_DIR.exists():  # what a creation that failed half-way left: no cluster in it
        shutil.rmtree(CONF_DIR)


@contextlib.contextmanager
def private_cluster(port: int, out: Path) -> Iterator[Cluster]:
    """A new cluster of the soak's own; dropped at the end whatever happens (its log kept)."""
    drop_cluster()  # a leftover of an earlier run that could not clean up
    check_port(port)
    cluster = Cluster(port)
    try:
        cluster.create()
        yield cluster
    finally:
        with contextlib.suppress(OSError):
            shutil.copyfile(cluster.log(), out / "postgresql.log")
        drop_cluster()


# --- faults -------------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str  # "terminate" or "restart"
    at: float  # wall clock, when it was injected
    detail: str
    back: float | None = None  # restart: wall clock, when the cluster answered again


def terminate_backends(cluster: Cluster) -> Fault:
    at = time.time()
    with contextlib.closing(cluster.connect()) as conn:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(TERMINATE)
            killed = sum(1 for (done,) in cursor.fetchall() if done)
    return Fault("terminate", at, f"{killed} backends terminated")


def restart_cluster(cluster: Cluster, pause: float) -> Fault:
    at = time.time()
    cluster.stop()
    time.sleep(pause)
    back = cluster.start()
    return Fault("restart", at, f"stopped (fast), {pause:g} s, started", back)


# --- the run ------------------------------------------------------------------------------


@dataclass
class Record:
    start: float
    end: float
    kind: str
    status: int
    code: str
    ms: float
    subject: str
    returned: str
    retry_after: str

    @property
    def ok(self) -> bool:
        return self.code == OK


def read_records(path: Path) -> list[Record]:
    with path.open(newline="") as rows:
        return [
            Record(float(r["start"]), float(r["end"]), r["kind"], int(r["status"]), r["code"],
                   float(r["ms"]), r["subject"], r["returned"], r["retry_after"])
            for r in csv.DictReader(rows)
        ]  # fmt: skip


def write_inputs(out: Path, data: Dataset) -> None:
    """The load's tokens and ids: each customer's own token, as the chat widget sends it."""
    (out / "hot.tsv").write_text(
        "".join(f"{token(c)}\t{c}\t{conversation}\n" for c, conversation in data.hot)
    )
    (out / "cold.tsv").write_text("".join(f"{token(c, e)}\t{c}\n" for c, e in data.cold["soak"]))


def migrate(url: str) -> None:
    helpline = str(Path(sys.executable).parent / "helpline")
    done = subprocess.run(
        [helpline, "db", "migrate"],
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"helpline db migrate: {done.stderr.strip()}")


def helpline_server(url: str, args: argparse.Namespace, out: Path) -> Any:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "JWT_SECRET": SECRET,
        "APP_ENV": "production",
        "DB_POOL_SIZE": str(POOL_SIZE),
        "ACCESS_LOG": "errors",  # one line per failed request: what the findings are matched to
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("WEB_CONCURRENCY", None)
    return serving("helpline", helpline_serve(port, args.workers), env, port, out)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def client_message_id_supported(sdl: str) -> bool:
    """Whether the schema's sendMessage takes a clientMessageId (an idempotency key)."""
    mutation = graphql.build_schema(sdl).mutation_type
    send = mutation.fields.get("sendMessage") if mutation else None
    return send is not None and "clientMessageId" in send.args


def load(server: Server, args: argparse.Namespace, out: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SOAK_DIR": str(out),
        "SOAK_RATE_PER_USER": f"{args.rate / args.users:g}",
        "SOAK_CLIENT_MESSAGE_ID": "1" if args.keyed else "0",
    }
    command = [
        str(Path(sys.executable).parent / "locust"),
        "-f",
        str(ROOT / "bench" / "soak_load.py"),
        "--headless",
        "--users",
        str(args.users),
        "--spawn-rate",
        str(args.users),
        "--run-time",
        f"{args.duration}s",
        "--stop-timeout",
        "10",
        "--host",
        server.base,
        "--csv",
        str(out / "locust"),
        "--only-summary",
        "--exit-code-on-error",
        "0",
        "--loglevel",
        "WARNING",
    ]
    with (out / "locust.log").open("wb") as log:
        return subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def inject_faults(
    cluster: Cluster, locust: subprocess.Popen[bytes], started: float, args: argparse.Namespace
) -> list[Fault]:
    """A fault every --fault-every seconds while the load runs; the middle one a restart."""
    offsets = [k * args.fault_every for k in range(1, math.ceil(args.duration / args.fault_every))]
    restart = len(offsets) // 2
    faults: list[Fault] = []
    for i, offset in enumerate(offsets):
        while (wait := started + offset - time.time()) > 0:
            if locust.poll() is not None:
                raise RuntimeError(f"the load stopped early (exit {locust.returncode})")
            time.sleep(min(wait, 0.5))
        if i == restart:
            fault = restart_cluster(cluster, args.restart_pause)
        else:
            fault = terminate_backends(cluster)
        print(f"  {fault.at - started:6.1f} s: {fault.kind}: {fault.detail}", flush=True)
        faults.append(fault)
    return faults


@dataclass
class Outcome:
    section: str
    broken: list[str]  # invariants that do not hold
    findings: Counter[str]  # answers other than success or 503 SERVICE_UNAVAILABLE + Retry-After


def soak(args: argparse.Namespace, out: Path) -> Outcome:
    with private_cluster(args.port, out) as cluster:
        print(f"private cluster {VERSION}/{NAME} on 127.0.0.1:{cluster.port}", flush=True)
        migrate(cluster.url)
        data = seed(cluster.url, seed_arguments(args), ["soak"])
        write_inputs(out, data)
        seeded = datetime.now(UTC)
        with helpline_server(cluster.url, args, out) as server:
            locust = load(server, args, out)
            started = time.time()
            try:
                faults = inject_faults(cluster, locust, started, args)
                locust.wait(timeout=args.duration + 60)
            finally:
                stop(locust)
        if locust.returncode != 0:
            raise RuntimeError(f"locust exited {locust.returncode}: see {out / 'locust.log'}")
        records = read_records(out / "requests.csv")
        if not records:
            raise RuntimeError(f"the load recorded no request: see {out / 'locust.log'}")
        invariants = check_invariants(cluster, records, seeded, keyed=args.keyed)
        (out / "faults.json").write_text(
            json.dumps({"started": started, "faults": [asdict(f) for f in faults]}, indent=1)
        )
        (out / "invariants.json").write_text(json.dumps([asdict(i) for i in invariants], indent=1))
        version = cluster.version()
    return Outcome(
        report(args, records, faults, started, invariants, version),
        [check.name for check in invariants if not check.ok],
        findings(out),
    )


def findings(out: Path) -> Counter[str]:
    """The load's findings (bench/soak_load.py decides), by status, code and Retry-After."""
    path = out / "findings.jsonl"
    found = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return Counter(
        f"{f['status']} {f['code']}"
        + (" without Retry-After" if f["status"] == 503 and not f["retry_after"] else "")
        for f in found
    )


def seed_arguments(args: argparse.Namespace) -> argparse.Namespace:
    """bench.api.seed's arguments: every customer has a conversation; the new ones have none."""
    return argparse.Namespace(
        users=args.customers,
        conversations=args.customers,
        messages=4,
        admins=args.admins,
        cold=args.new_customers,
    )


# --- the invariants -----------------------------------------------------------------------


@dataclass
class Invariant:
    name: str
    source: str
    count: int | None  # None: a present-or-missing check (a constraint, the trigger)
    ok: bool
    note: str = ""


WITHOUT_WELCOME = """
SELECT count(*) FROM conversations c
LEFT JOIN LATERAL (
    SELECT m.sender_id, m.content FROM messages m
    WHERE m.conversation_id = c.id ORDER BY m.created_at, m.id LIMIT 1
) first ON true
WHERE first.sender_id IS DISTINCT FROM c.admin_id
   OR (c.created_at >= %(seeded)s AND first.content IS DISTINCT FROM %(welcome)s)
"""
FIRST_CONTACTS_NOT_STORED = """
SELECT count(*) FROM unnest(%(customers)s::uuid[], %(conversations)s::uuid[]) AS a(customer, conv)
LEFT JOIN profiles p ON p.id = a.customer
LEFT JOIN conversations c ON c.customer_id = a.customer
WHERE p.id IS NULL OR c.id IS DISTINCT FROM a.conv
"""
STORED_TWICE = """
SELECT count(*) FROM (
    SELECT 1 FROM messages WHERE client_message_id IS NOT NULL
    GROUP BY conversation_id, sender_id, client_message_id HAVING count(*) > 1
) AS twice
"""
MESSAGES_LOST = """
SELECT count(*) FROM unnest(%(ids)s::uuid[]) AS a(id)
WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = a.id)
"""


def check_invariants(
    cluster: Cluster, records: list[Record], seeded: datetime, *, keyed: bool
) -> list[Invariant]:
    """The post-mortem's SQL, ``helpline integrity check``, and what the load was told."""
    found: list[Invariant] = []
    ops = ROOT / "schema" / "ops"
    first_contacts = {r.subject: r.returned for r in records if r.kind == "first-contact" and r.ok}
    sent = [r.returned for r in records if r.kind == "send" and r.ok]
    with contextlib.closing(cluster.connect()) as conn, conn.cursor() as cursor:
        cursor.execute((ops / "integrity_test.sql").read_text())
        orphans = len(cursor.fetchall())
        found.append(
            Invariant("orphaned conversations", "integrity_test.sql", orphans, not orphans)
        )
        cursor.execute((ops / "monitoring.sql").read_text())
        profiles, users, conversations, orphaned, coverage = cursor.fetchone()
        found.append(
            Invariant(
                "orphaned conversations",
                "monitoring.sql",
                orphaned,
                not orphaned,
                f"{conversations:,} conversations, {profiles:,} profiles for {users:,} users "
                f"({coverage}% coverage)",
            )
        )
        cursor.execute(WITHOUT_WELCOME, {"seeded": seeded, "welcome": DEFAULT_WELCOME_MESSAGE})
        count = cursor.fetchone()[0]
        found.append(
            Invariant(
                "conversations without their welcome message",
                "soak SQL: first message not from the admin (or, if opened in the soak, not the "
                "welcome text)",
                count,
                not count,
            )
        )
        cursor.execute(
            FIRST_CONTACTS_NOT_STORED,
            {"customers": list(first_contacts), "conversations": list(first_contacts.values())},
        )
        count = cursor.fetchone()[0]
        found.append(
            Invariant(
                "first contacts answered but missing a profile or their conversation",
                f"soak SQL over the {len(first_contacts):,} successful first contacts",
                count,
                not count,
            )
        )
        cursor.execute(MESSAGES_LOST, {"ids": sent})
        count = cursor.fetchone()[0]
        found.append(
            Invariant(
                "acknowledged messages missing",
                f"soak SQL over the {len(sent):,} messages sendMessage acknowledged",
                count,
                not count,
            )
        )
        if keyed:
            cursor.execute(STORED_TWICE)
            count = cursor.fetchone()[0]
            found.append(
                Invariant(
                    "messages stored twice under one clientMessageId",
                    "soak SQL (failed sends were sent again with their key)",
                    count,
                    not count,
                )
            )
    return found + helpline_checks(cluster.url)


def helpline_checks(url: str) -> list[Invariant]:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "helpline"), "integrity", "check", "--json"],
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    if done.returncode not in (0, 1):
        raise RuntimeError(f"helpline integrity check: {done.stderr.strip()}")
    return [
        Invariant(
            check["name"],
            "helpline integrity check",
            check["count"],
            check["status"] != "violation",
            check["summary"] if check["status"] == "warning" else "",
        )
        for check in json.loads(done.stdout)["checks"]
    ]


# --- the report ---------------------------------------------------------------------------


@dataclass
class Window:
    """Requests that ended between a fault (or the start) and the next one (or the end)."""

    label: str
    start: float
    end: float
    failed: Counter[str] = field(default_factory=Counter)
    recovery: float | None = (
        None  # seconds from the fault until requests succeed again (None: never)
    )


def windows(faults: list[Fault], records: list[Record], started: float) -> list[Window]:
    ended = max((r.end for r in records), default=started)
    edges = [started, *(f.at for f in faults), ended + 1]
    labels = ["before the first fault", *(f.kind for f in faults)]
    result = []
    for label, start, end in zip(labels, edges[:-1], edges[1:], strict=True):
        inside = sorted((r for r in records if start <= r.end < end), key=lambda r: r.end)
        window = Window(label, start, end)
        failures = [r for r in inside if not r.ok]
        window.failed.update(f"{r.status} {r.code}" for r in failures)
        window.recovery = 0.0 if not failures else recovered_after(inside, start)
        result.append(window)
    return result


def recovered_after(inside: list[Record], fault: float) -> float | None:
    """Seconds from the fault to the first success that opens a whole second with no failure.

    ``inside``: the window's requests in the order they ended. None: no such second.
    """
    failures = [r.end for r in inside if not r.ok]
    for record in inside:
        if record.ok and record.end + CLEAN_S <= inside[-1].end:
            nxt = bisect.bisect_left(failures, record.end)
            if nxt == len(failures) or failures[nxt] > record.end + CLEAN_S:
                return record.end - fault
    return None


def report(
    args: argparse.Namespace,
    records: list[Record],
    faults: list[Fault],
    started: float,
    invariants: list[Invariant],
    version: str,
) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    span = max(r.end for r in records) - min(r.start for r in records)
    failed = [r for r in records if not r.ok]
    command = (
        f"python -m bench.soak --duration {args.duration:g} --fault-every {args.fault_every:g} "
        f"--port {args.port} --workers {args.workers} --users {args.users} --rate {args.rate:g}"
    )
    lines = [
        "## Soak: mixed load with database faults",
        "",
        f"Measured {when} on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, PostgreSQL {version} (a private cluster the soak created "
        f"with `pg_createcluster` on port {args.port}, on loopback), by `make bench-soak` "
        f"(`{command}`). `helpline serve --workers {args.workers}` (pool of {POOL_SIZE} "
        f"connections per worker); load from locust 2.47.0 (`bench/soak_load.py`, a separate "
        f"process): {args.users} users aiming at {args.rate:g} requests/s in all, each with a "
        "customer's own token: 50% hot `adminConversation`, 20% first contact of a customer with "
        "a users row and no profile (a failed one is tried again later), 20% `sendMessage`"
        + (
            " with a `clientMessageId` (a failed one is sent again with its key)"
            if args.keyed
            else " (no `clientMessageId` in the schema yet: a failed one is not sent again)"
        )
        + ", 10% the 20 newest messages. Dataset: "
        f"{args.customers:,} customers with a conversation, {args.new_customers:,} new "
        f"customers, {args.admins} admins.",
        "",
        f"**{len(records):,} requests served in {span:.0f} s ({len(records) / span:,.0f} "
        f"requests/s); {len(records) - len(failed):,} succeeded, {len(failed):,} failed "
        f"({100 * len(failed) / len(records):.2f}%).**",
        "",
        "| HTTP status | code | requests | Retry-After (value: requests) |",
        "|---|---|---|---|",
    ]
    groups: dict[tuple[int, str], Counter[str]] = {}
    for r in records:
        groups.setdefault((r.status, r.code or "(success)"), Counter())[
            r.retry_after or "none"
        ] += 1
    for (status, code), waits in sorted(groups.items()):
        shown = "" if status == 200 else ", ".join(f"{w}: {n:,}" for w, n in sorted(waits.items()))
        lines.append(f"| {status} | {code} | {waits.total():,} | {shown} |")
    lines += [
        "",
        "| request | served | failed | p50 ms | p99 ms (successes) |",
        "|---|---|---|---|---|",
    ]
    for kind in ("hot", "first-contact", "send", "list"):
        mine = [r for r in records if r.kind == kind]
        times = [r.ms for r in mine if r.ok] or [math.nan]
        lines.append(
            f"| {kind} | {len(mine):,} | {sum(not r.ok for r in mine):,} | "
            f"{percentile(times, 0.5):.1f} | {percentile(times, 0.99):.1f} |"
        )
    lines += [
        "",
        "| # | fault | at s | what | failed requests until the next fault (status code: count) "
        "| recovery s |",
        "|---|---|---|---|---|---|",
    ]
    for i, window in enumerate(windows(faults, records, started)):
        fault = faults[i - 1] if i else None
        what = "steady load" if fault is None else fault.detail
        if fault and fault.back is not None:
            what += f"; accepting connections again after {fault.back - fault.at:.1f} s"
        failures = ", ".join(f"{k}: {n:,}" for k, n in window.failed.most_common()) or "none"
        recovery = (
            "n/a"
            if fault is None
            else ("**not recovered**" if window.recovery is None else f"{window.recovery:.2f}")
        )
        if fault and fault.back is not None and window.recovery is not None:
            recovery += f" ({window.recovery - (fault.back - fault.at):.2f} after it was back)"
        lines.append(
            f"| {i or '-'} | {window.label} | {window.start - started:.1f} | {what} | {failures} "
            f"| {recovery} |"
        )
    lines += ["", "| invariant | checked by | count | holds |", "|---|---|---|---|"]
    for check in invariants:
        note = f" ({check.note})" if check.note else ""
        lines.append(
            f"| {check.name}{note} | {check.source} | "
            + ("-" if check.count is None else f"{check.count:,}")
            + " | "
            f"{'yes' if check.ok else '**no**'} |"
        )
    lines += [
        "",
        "How it was measured: the load records every request (wall-clock start and end, HTTP "
        "status, the GraphQL `extensions.code` of its errors, Retry-After; a success is HTTP 200 "
        "with data and no error) and the driver records when it injected each fault, on the "
        "same clock. A terminate fault is `" + TERMINATE + "` on the private cluster (the app's "
        "pooled connections; each worker's LISTEN connection, `helpline-listener`, is hit by the "
        f"restart only); the restart is `pg_ctlcluster stop -m fast`, {args.restart_pause:g} s, "
        "`pg_ctlcluster start`, and the cluster is back when the driver's first connection "
        "succeeds (polled every 50 ms). A fault's window runs until the next fault; its "
        "recovery time is from the fault to the first success after which a whole second "
        "passed without a failed request (0 when no request failed). HTTP 503 "
        "SERVICE_UNAVAILABLE with a Retry-After is the expected answer while a fault lasts; "
        "every other failure is a finding, kept in full in `findings.jsonl` beside the run's "
        "records and logs. The invariants are checked after the load stopped and the server "
        "was shut down: the post-mortem's own SQL (`schema/ops/`), `helpline integrity check "
        "--json`, and the soak's own checks against what the load was told (the first contacts "
        "and the messages acknowledged).",
        "",
    ]
    return "\n".join(lines)


def findings_summary(out: Path) -> list[str]:
    """Each finding once per (status, code, kind), with the server's log lines for it."""
    path = out / "findings.jsonl"
    if not path.exists():
        return []
    log = (out / "helpline.log").read_text(errors="replace").splitlines()
    seen: set[tuple[Any, ...]] = set()
    lines = []
    for line in path.read_text().splitlines():
        finding = json.loads(line)
        key = (finding["status"], finding["code"], finding["kind"])
        if key in seen:
            continue
        seen.add(key)
        lines.append(
            f"finding: {finding['kind']} HTTP {finding['status']} {finding['code']} "
            f"({finding['request_id']}): {(finding['error'] or finding['body'])[:300]}"
        )
        lines += [f"    log: {entry[:400]}" for entry in log if finding["request_id"] in entry][:5]
    return lines


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM too runs the clean-up (the cluster is dropped)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=300, help="seconds of load")
    parser.add_argument("--fault-every", type=float, default=30, help="seconds between faults")
    parser.add_argument("--port", type=int, default=5499, help="the private cluster's port")
    parser.add_argument("--workers", type=int, default=2, help="helpline serve --workers")
    parser.add_argument("--users", type=int, default=20, help="locust users")
    parser.add_argument("--rate", type=float, default=200, help="requests/s aimed at, in all")
    parser.add_argument("--customers", type=int, default=2000, help="with a conversation")
    parser.add_argument("--new-customers", type=int, help="first contacts (default: enough)")
    parser.add_argument("--admins", type=int, default=3)
    parser.add_argument("--restart-pause", type=float, default=3, help="seconds down")
    parser.add_argument("--out", help="where the run's records and logs go (default: /tmp/...)")
    parser.add_argument("--write", default=str(ROOT / "BENCHMARKS.md"), help="'' to skip")
    args = parser.parse_args()
    if min(args.duration, args.fault_every, args.workers, args.users, args.rate) <= 0:
        parser.error("--duration, --fault-every, --workers, --users and --rate must be positive")
    if args.new_customers is None:  # enough for every first contact of the run, and a margin
        args.new_customers = max(
            2000, math.ceil(args.rate * FIRST_CONTACT_SHARE * args.duration * 1.25)
        )
    missing = [
        t for t in ("pg_createcluster", "pg_ctlcluster", "pg_dropcluster") if not shutil.which(t)
    ]
    if missing or os.geteuid() != 0:
        print("soak: needs root and Debian's postgresql-common (pg_createcluster)", file=sys.stderr)
        return 2
    args.keyed = client_message_id_supported((ROOT / "schema" / "schema.graphql").read_text())
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="helpline-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"soak: {args.duration:g} s, a fault every {args.fault_every:g} s; records in {out}")
    outcome = soak(args, out)
    print(outcome.section)
    if args.write:
        write_marked_section(Path(args.write), "soak", outcome.section)
    for line in findings_summary(out):
        print(line)
    if outcome.broken:
        print(f"soak: invariants violated: {', '.join(outcome.broken)}", file=sys.stderr)
    if outcome.findings:
        found = ", ".join(f"{k}: {n:,}" for k, n in outcome.findings.most_common())
        print(f"soak: findings (not a success, nor 503 with Retry-After): {found}", file=sys.stderr)
    print(f"soak: records, findings and logs in {out}")
    return 1 if outcome.broken or outcome.findings else 0


if __name__ == "__main__":
    sys.exit(main())
