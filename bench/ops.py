"""Ops at scale: Helpline's integrity count and orphan repair against the seed's own SQL in psql.

Two datasets, seeded with COPY into databases of this run's own on BENCH_DATABASE_URL (loopback
only) and dropped at the end, also on failure:

- healthy: N users, each with a profile and an admin conversation (a few admins answer them).
- orphaned: N users without a profile, each with a conversation: the post-mortem's state. The
  rows are copied with ``session_replication_role = replica``, so neither the users trigger nor
  the foreign keys fire, as legacy data was written (tests/factories.py does the same per row).
  It is a template: every repair run gets a fresh copy (CREATE DATABASE ... TEMPLATE).

Integrity count, on the healthy dataset: the seed's ``integrity_test.sql`` in psql against
``helpline integrity check --json`` (the console script, every check), both as processes timed
by wall clock; and, in-process, the query time psql reports (``\\timing``) against
``repo.integrity.count_orphaned_conversations()`` on a warm connection, so process start-up
and the extra checks show apart. The statements the checks run are also replayed through psql,
so the CLI's cost splits into SQL and Python.

Repair, on copies of the orphaned dataset: the seed's ``repair_orphaned_conversations.sql``
(one INSERT ... SELECT ... ON CONFLICT DO NOTHING) in psql against ``helpline integrity repair
--apply`` (keyset batches, one transaction each). Each run starts from a fresh copy after a
CHECKPOINT and is checked afterwards (no orphan left, every profile created).

Runs alternate between the contenders (order flipped each round); each figure is the median.
Every subprocess has a timeout and the whole run a deadline.

    python -m bench.ops [--conversations 1000000] [--runs 5] [--repair-runs 3]
                        [--batch-size 1000] [--deadline 3600] [--profile repair.speedscope.json]

``--profile`` runs one more Helpline repair under py-spy (``pip install -e '.[bench]'``),
waits included, so the file shows where its wall time goes.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import logging
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import psycopg2.extensions

from bench.common import write_marked_section
from repo.checks import run_checks
from repo.config import DatabaseSettings
from repo.database import close_database, open_database
from repo.integrity import DEFAULT_BATCH_SIZE, count_orphaned_conversations
from repo.migrate import migrate
from repo.pool import postgres_connect_kwargs

ROOT = Path(__file__).resolve().parents[1]
OPS_SQL = ROOT / "schema" / "ops"
SERVER_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
TITLE = "## Ops: integrity and repair at scale"
ADMINS = 3
COPY_CHUNK = 100_000
COUNT_TIMEOUT_S = 300
REPAIR_TIMEOUT_S = 1800
CONNECT_RETRIES = 10
COUNT_TARGET, REPAIR_TARGET = 1.5, 2.0
_TIMING = re.compile(r"^Time: ([\d.]+) ms", re.M)
_CREATED = re.compile(r"created (\d+) profile\(s\)")


class Deadline:
    """The whole run's time budget; each step asks for what is left before it starts."""

    def __init__(self, seconds: float) -> None:
        self.ends = time.monotonic() + seconds

    def left(self, cap: float) -> float:
        remaining = self.ends - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the benchmark ran past its --deadline")
        return min(cap, remaining)


# --- databases ---------------------------------------------------------------------------------


def url_of(name: str) -> str:
    return urlunsplit(urlsplit(SERVER_URL)._replace(path=f"/{name}"))


def connect(url: str, *, autocommit: bool = False) -> Any:
    conn = psycopg2.connect(**postgres_connect_kwargs(url))
    conn.autocommit = autocommit
    return conn


class Server:
    """Databases created by this run on the bench server, every one dropped on close."""

    def __init__(self) -> None:
        self.admin = connect(SERVER_URL, autocommit=True)
        self.prefix = f"helpline_bench_ops_{os.getpid()}"
        self.created: list[str] = []

    def sql(self, statement: str) -> None:
        with self.admin.cursor() as cursor:
            cursor.execute(statement)

    def create(self, suffix: str, *, template: str | None = None) -> str:
        name = f"{self.prefix}_{suffix}"
        self.created.append(name)
        self.sql(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
        return name

    def drop(self, name: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.created.remove(name)

    def checkpoint(self) -> None:
        """Flush dirty pages now, so no checkpoint lands inside a timed run."""
        self.sql("CHECKPOINT")

    def version(self) -> str:
        with self.admin.cursor() as cursor:
            cursor.execute("SHOW server_version")
            return str(cursor.fetchone()[0]).split()[0]

    def close(self) -> None:
        for name in list(self.created):
            with contextlib.suppress(psycopg2.Error):
                self.drop(name)
        self.admin.close()


@contextlib.contextmanager
def bench_server() -> Iterator[Server]:
    host = urlsplit(SERVER_URL).hostname or ""
    if host not in LOOPBACK:
        raise SystemExit(
            f"BENCH_DATABASE_URL: host {host!r} is not loopback; benchmarks stay local"
        )
    server = Server()
    try:
        yield server
    finally:
        server.close()


# --- seeding -----------------------------------------------------------------------------------


def _uuids(rng: random.Random, count: int) -> list[str]:
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


def _copy(cursor: Any, table: str, columns: str, rows: Iterable[str]) -> None:
    """COPY tab-separated ``rows`` into ``table``, COPY_CHUNK rows per round trip."""
    buffer: list[str] = []

    def flush() -> None:
        cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", io.StringIO("".join(buffer)))
        buffer.clear()

    for row in rows:
        buffer.append(row)
        if len(buffer) == COPY_CHUNK:
            flush()
    if buffer:
        flush()


def _user_rows(ids: list[str], kind: str) -> Iterator[str]:
    for i, user_id in enumerate(ids):
        # Some users have no full name, so the profile name falls back to the email.
        name = r"\N" if i % 10 == 0 else f"{kind.title()} {i}"
        yield f"{user_id}\t{kind}{i}@example.com\t{name}\t\\N\n"


def seed(url: str, conversations: int, *, with_profiles: bool, seed_value: int) -> None:
    """Migrate, then COPY admins and ``conversations`` customers, each with one conversation.

    Without profiles every conversation is an orphan whose customer has a users row.
    """
    migrate(DatabaseSettings(database_url=url))
    gc.collect()  # yoyo's backend keeps its connection until collected; a template needs none
    rng = random.Random(seed_value)
    admins, customers = _uuids(rng, ADMINS), _uuids(rng, conversations)
    conn = connect(url)
    try:
        with conn, conn.cursor() as cursor:
            # As legacy data was written: no trigger, no foreign key checks.
            cursor.execute("SET LOCAL session_replication_role = replica")
            _copy(
                cursor,
                "users",
                "id, email, full_name, profile_picture_url",
                [
                    *_user_rows(admins, "admin"),
                    *_user_rows(customers, "customer"),
                ],
            )
            profiles = admins + (customers if with_profiles else [])
            _copy(
                cursor,
                "profiles",
                "id, name, is_admin",
                (
                    f"{p}\tProfile {i}\t{'t' if i < ADMINS else 'f'}\n"
                    for i, p in enumerate(profiles)
                ),
            )
            _copy(
                cursor,
                "conversations",
                "id, customer_id, admin_id",
                (
                    f"{c}\t{customer}\t{admins[i % ADMINS]}\n"
                    for i, (c, customer) in enumerate(
                        zip(_uuids(rng, conversations), customers, strict=True)
                    )
                ),
            )
    finally:
        conn.close()
    conn = connect(url, autocommit=True)
    try:
        with conn.cursor() as cursor:
            cursor.execute("VACUUM (ANALYZE)")  # hint bits, visibility map and statistics now
    finally:
        conn.close()


def orphan_count(url: str) -> int:
    conn = connect(url)
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM conversations c LEFT JOIN profiles p ON p.id = c.customer_id"
                " WHERE p.id IS NULL"
            )
            return int(cursor.fetchone()[0])
    finally:
        conn.close()


# --- measuring ---------------------------------------------------------------------------------


@dataclass
class Samples:
    """Repeated timings of one contender, in seconds."""

    wall: list[float] = field(default_factory=list)
    query: list[float] = field(default_factory=list)  # psql's \timing, where psql ran it

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def query_median(self) -> float:
        return statistics.median(self.query)


def run_timed(command: list[str], timeout: float, **kwargs: Any) -> tuple[float, Any]:
    """Run ``command`` to completion: its wall time and the completed process.

    The server is shared: a run refused for want of connection slots (others' load) is
    retried a few times, and only the run that got in is timed.
    """
    retries = 0
    while True:
        started = time.perf_counter()
        proc = subprocess.run(
            command, check=False, capture_output=True, text=True, timeout=timeout, **kwargs
        )
        wall = time.perf_counter() - started
        if "too many clients" not in proc.stderr or retries == CONNECT_RETRIES:
            return wall, proc
        retries += 1
        time.sleep(2)


def run_psql(url: str, sql_file: Path, timeout: float) -> tuple[float, float, str]:
    """Run ``sql_file`` in psql: wall time of the process, psql's \\timing sum, and its output."""
    command = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", r"\timing on"]
    wall, proc = run_timed([*command, "-f", str(sql_file)], timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"psql -f {sql_file.name} failed: {proc.stderr.strip()}")
    query = sum(float(ms) for ms in _TIMING.findall(proc.stdout)) / 1000
    return wall, query, proc.stdout


def helpline_command() -> list[str]:
    """The console script an operator runs, next to this interpreter."""
    return [str(Path(sys.executable).with_name("helpline"))]


def helpline_env(url: str) -> dict[str, str]:
    """A clean environment: only ``url`` as the database (no replica, no other settings)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "DATABASE_URL": url,
        "PYTHONPATH": str(ROOT),  # the checkout this bench runs from, whatever is installed
    }


def run_helpline(url: str, args: list[str], timeout: float) -> tuple[float, int, str]:
    """Run ``helpline ARGS`` on ``url``: wall time, exit code and standard output."""
    wall, proc = run_timed([*helpline_command(), *args], timeout, env=helpline_env(url))
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"helpline {' '.join(args)} failed: {proc.stderr.strip()[-2000:]}")
    return wall, proc.returncode, proc.stdout


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


@contextlib.contextmanager
def statements_recorded() -> Iterator[list[tuple[str, Any]]]:
    """The (sql, params) of every statement peewee runs inside the block (its DEBUG log)."""
    recorded: list[tuple[str, Any]] = []

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if isinstance(record.msg, tuple):
                recorded.append(record.msg)

    logger, handler = logging.getLogger("peewee"), Recorder(logging.DEBUG)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield recorded
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def checks_as_sql(url: str, path: Path) -> int:
    """Write the statements `helpline integrity check` runs to ``path``; returns their count."""
    with statements_recorded() as recorded:
        run_checks()
    conn = connect(url)
    try:
        with conn.cursor() as cursor:
            text = "".join(f"{cursor.mogrify(sql, params).decode()};\n" for sql, params in recorded)
    finally:
        conn.close()
    path.write_text(text)
    return len(recorded)


# --- integrity count -------------------------------------------------------------------------


@dataclass
class CountResults:
    seed_psql: Samples = field(default_factory=Samples)  # integrity_test.sql
    cli: Samples = field(default_factory=Samples)  # helpline integrity check --json
    replay_psql: Samples = field(default_factory=Samples)  # the checks' statements, in psql
    count_in_process: Samples = field(default_factory=Samples)
    checks_in_process: Samples = field(default_factory=Samples)
    startup: Samples = field(default_factory=Samples)  # helpline --help
    statements: int = 0


def bench_count(url: str, runs: int, deadline: Deadline, workdir: Path) -> CountResults:
    """Time the integrity count every way, ``runs`` rounds after one warm-up round."""
    results = CountResults()
    seed_sql, replay_sql = OPS_SQL / "integrity_test.sql", workdir / "checks.sql"
    open_database(DatabaseSettings(database_url=url))
    try:
        results.statements = checks_as_sql(url, replay_sql)

        def seed_psql() -> tuple[float, float | None]:
            wall, query, out = run_psql(url, seed_sql, deadline.left(COUNT_TIMEOUT_S))
            if "(0 rows)" not in out:
                raise RuntimeError(f"integrity_test.sql found orphans on the healthy data: {out}")
            return wall, query

        def replay_psql() -> tuple[float, float | None]:
            wall, query, _ = run_psql(url, replay_sql, deadline.left(COUNT_TIMEOUT_S))
            return wall, query

        def cli() -> tuple[float, float | None]:
            args = ["integrity", "check", "--json"]
            wall, code, out = run_helpline(url, args, deadline.left(COUNT_TIMEOUT_S))
            checks = {c["name"]: c for c in json.loads(out)["checks"]}
            if code != 0 or checks["orphaned_conversations"]["count"] != 0:
                raise RuntimeError(f"helpline integrity check failed on the healthy data: {out}")
            return wall, None

        def startup() -> tuple[float, float | None]:
            return run_helpline(url, ["--help"], deadline.left(COUNT_TIMEOUT_S))[0], None

        def count_in_process() -> tuple[float, float | None]:
            elapsed, count = timed(count_orphaned_conversations)
            if count != 0:
                raise RuntimeError(f"count_orphaned_conversations() = {count} on healthy data")
            return elapsed, None

        def checks_in_process() -> tuple[float, float | None]:
            return timed(run_checks)[0], None

        contenders: dict[str, Callable[[], tuple[float, float | None]]] = {
            "seed_psql": seed_psql,
            "cli": cli,
            "replay_psql": replay_psql,
            "count_in_process": count_in_process,
            "checks_in_process": checks_in_process,
            "startup": startup,
        }
        for round_ in range(runs + 1):  # round 0 warms the caches and is not kept
            names = list(contenders)
            for name in names if round_ % 2 else reversed(names):
                wall, query = contenders[name]()
                if round_:
                    samples: Samples = getattr(results, name)
                    samples.wall.append(wall)
                    if query is not None:
                        samples.query.append(query)
            print(f"  integrity count: round {round_}/{runs} done", flush=True)
    finally:
        close_database()
    return results


# --- repair ------------------------------------------------------------------------------------


@dataclass
class RepairResults:
    seed_psql: Samples = field(default_factory=Samples)  # repair_orphaned_conversations.sql
    cli: Samples = field(default_factory=Samples)  # helpline integrity repair --apply


def profile_count(url: str) -> int:
    conn = connect(url)
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM profiles")
            return int(cursor.fetchone()[0])
    finally:
        conn.close()


def bench_repair(
    server: Server,
    template: str,
    conversations: int,
    runs: int,
    batch_size: int,
    deadline: Deadline,
) -> RepairResults:
    """Repair a fresh copy of the orphaned dataset each run, alternating the contenders."""
    results = RepairResults()

    def seed_psql(url: str) -> None:
        sql = OPS_SQL / "repair_orphaned_conversations.sql"
        wall, query, _ = run_psql(url, sql, deadline.left(REPAIR_TIMEOUT_S))
        results.seed_psql.wall.append(wall)
        results.seed_psql.query.append(query)

    def cli(url: str) -> None:
        args = ["integrity", "repair", "--apply", "--batch-size", str(batch_size)]
        wall, code, out = run_helpline(url, args, deadline.left(REPAIR_TIMEOUT_S))
        created = _CREATED.search(out)
        if code != 0 or created is None or int(created.group(1)) != conversations:
            raise RuntimeError(f"helpline integrity repair did not repair every orphan: {out}")
        results.cli.wall.append(wall)

    contenders: dict[str, Callable[[str], None]] = {"seed_psql": seed_psql, "cli": cli}
    for round_ in range(runs):
        names = list(contenders)
        for name in names if round_ % 2 == 0 else reversed(names):
            copy = server.create(f"repair_{name}", template=template)
            try:
                server.checkpoint()
                contenders[name](url_of(copy))
                left, profiles = orphan_count(url_of(copy)), profile_count(url_of(copy))
                if left or profiles != conversations + ADMINS:
                    raise RuntimeError(f"{name}: {left} orphan(s) left, {profiles} profiles")
            finally:
                server.drop(copy)
        print(f"  repair: round {round_ + 1}/{runs} done", flush=True)
    return results


def profile_repair(
    server: Server, template: str, batch_size: int, output: Path, deadline: Deadline
) -> None:
    """One more Helpline repair under py-spy (waits included), written as a speedscope file."""
    copy = server.create("repair_profiled", template=template)
    try:
        server.checkpoint()
        env = helpline_env(url_of(copy))
        command = ["integrity", "repair", "--apply", "--batch-size", str(batch_size)]
        spy = [str(Path(sys.executable).with_name("py-spy")), "record", "--idle", "--rate", "200"]
        subprocess.run(
            [
                *spy,
                "--format",
                "speedscope",
                "-o",
                str(output),
                "--",
                *helpline_command(),
                *command,
            ],
            check=True,
            capture_output=True,
            env=env,
            timeout=deadline.left(REPAIR_TIMEOUT_S),
        )
    finally:
        server.drop(copy)


# --- report ------------------------------------------------------------------------------------


def server_facts(server: Server) -> str:
    with server.admin.cursor() as cursor:
        settings = {}
        for name in (
            "shared_buffers",
            "synchronous_commit",
            "jit",
            "max_parallel_workers_per_gather",
        ):
            cursor.execute(f"SHOW {name}")
            settings[name] = cursor.fetchone()[0]
    return ", ".join(f"{k} {v}" for k, v in settings.items())


def verdict(ratio: float, target: float) -> str:
    return f"met (≤ {target:g}x)" if ratio <= target else f"**missed** (≤ {target:g}x)"


def report(
    args: argparse.Namespace,
    command: str,
    machine: str,
    count: CountResults,
    repair: RepairResults,
) -> str:
    n = f"{args.conversations:,}"

    def s(value: float) -> str:
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"

    count_ratio = count.count_in_process.median / count.seed_psql.query_median
    cli_ratio = count.cli.median / count.seed_psql.median
    repair_ratio = repair.cli.median / repair.seed_psql.median
    sql_share = count.replay_psql.median / count.cli.median
    lines = [
        TITLE,
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine}, by `{command}`. "
        f"Integrity count: {n} users, each with a profile and a conversation (no orphan), "
        f"median of {args.runs} rounds after a warm-up round. Repair: {n} orphaned "
        "conversations (customers with a users row and no profile, copied in with "
        "`session_replication_role = replica` as legacy data was written), each run on a fresh "
        "copy of a template database after a CHECKPOINT, checked afterwards (no orphan left, "
        f"every profile created), median of {args.repair_runs} runs each. Contenders alternate "
        "within each round (order flipped every round), same session, same server; times are "
        "wall clock around the process unless marked in-process or `\\timing`.",
        "",
        "| workload | Helpline | seed's SQL in psql | ratio | target |",
        "|---|---|---|---|---|",
        "| integrity count, the query: `count_orphaned_conversations()` in-process, warm "
        "connection, vs `integrity_test.sql` as psql's `\\timing` reports it | "
        f"{s(count.count_in_process.median)} | {s(count.seed_psql.query_median)} | "
        f"{count_ratio:.2f}x | {verdict(count_ratio, COUNT_TARGET)} |",
        "| integrity count, as an operator runs it: `helpline integrity check --json` vs "
        "`psql -f schema/ops/integrity_test.sql` | "
        f"{s(count.cli.median)} | {s(count.seed_psql.median)} | {cli_ratio:.2f}x | "
        f"{verdict(cli_ratio, COUNT_TARGET)} |",
        f"| repair of {n} orphans: `helpline integrity repair --apply --batch-size "
        f"{args.batch_size}` vs `psql -f schema/ops/repair_orphaned_conversations.sql` | "
        f"{s(repair.cli.median)} | {s(repair.seed_psql.median)} | {repair_ratio:.2f}x | "
        f"{verdict(repair_ratio, REPAIR_TARGET)} |",
        "",
        "Where the time goes (medians):",
        "",
        "| measurement | time |",
        "|---|---|",
        f"| `psql -f integrity_test.sql`: process / `\\timing` | {s(count.seed_psql.median)} / "
        f"{s(count.seed_psql.query_median)} |",
        f"| `helpline --help` (interpreter and imports: the CLI's start-up) | "
        f"{s(count.startup.median)} |",
        f"| `repo.checks.run_checks()` in-process: every check `integrity check` runs, "
        f"{count.statements} statements | {s(count.checks_in_process.median)} |",
        f"| the same {count.statements} statements replayed in psql: process / `\\timing` | "
        f"{s(count.replay_psql.median)} / {s(count.replay_psql.query_median)} |",
        f"| `psql -f repair_orphaned_conversations.sql`: process / `\\timing` | "
        f"{s(repair.seed_psql.median)} / {s(repair.seed_psql.query_median)} |",
        "",
        f"All samples (s): integrity_test.sql {_listed(count.seed_psql.wall)}; "
        f"`integrity check` {_listed(count.cli.wall)}; "
        f"count in-process {_listed(count.count_in_process.wall)}; "
        f"repair SQL {_listed(repair.seed_psql.wall)}; "
        f"`integrity repair` {_listed(repair.cli.wall)}.",
        "",
        "Reading it: `helpline integrity check` is not one query but every check of the "
        f"post-mortem ({count.statements} statements: a sample and a count of orphaned "
        "conversations, of users without a profile, of conversations whose admin is no admin and "
        "of customers with several conversations, then the constraints and the trigger). "
        "Replayed through psql, those statements alone take "
        f"{count.replay_psql.query_median / count.seed_psql.query_median:.1f}x the seed's query "
        f"and {sql_share:.0%} of the command's time; the rest is the interpreter's start-up "
        f"({s(count.startup.median)}) and Python. So the command's ratio is bounded by the work "
        "it does, not by Python; the orphan count alone, the figure the seed's SQL gives, is "
        "the first row.",
        "",
        f"The repair walks the orphans in customer_id order in batches of {args.batch_size} "
        "(keyset: each batch probes only its own range), one transaction each "
        f"({-(-args.conversations // args.batch_size):,} commits, each a WAL flush), and counts "
        "the orphans before and after (two scans, each about the integrity count's time); the "
        "seed's SQL is one statement and one commit. What the repair adds to it is that "
        "bookkeeping, the price of short transactions that can be stopped and rerun.",
    ]
    return "\n".join(lines)


def _listed(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5, help="integrity count rounds")
    parser.add_argument("--repair-runs", type=int, default=3, help="repair runs per contender")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--deadline", type=float, default=3600, help="seconds for the whole run")
    parser.add_argument("--write", default=str(ROOT / "BENCHMARKS.md"), help="'' to skip")
    parser.add_argument("--profile", help="also profile one Helpline repair into this file")
    args = parser.parse_args()
    if args.conversations < 1 or args.runs < 1 or args.repair_runs < 1 or args.batch_size < 1:
        parser.error("--conversations, --runs, --repair-runs and --batch-size must be positive")
    if args.profile and not Path(sys.executable).with_name("py-spy").exists():
        parser.error("--profile needs py-spy: pip install -e '.[bench]'")
    command = (
        f"python -m bench.ops --conversations {args.conversations} --runs {args.runs} "
        f"--repair-runs {args.repair_runs} --batch-size {args.batch_size}"
    )
    deadline, started = Deadline(args.deadline), time.monotonic()
    with bench_server() as server, tempfile.TemporaryDirectory() as workdir:
        machine = (
            f"{platform.machine()}, {os.cpu_count()} cores, PostgreSQL {server.version()} on "
            f"loopback ({server_facts(server)})"
        )
        print(f"seeding {args.conversations:,} healthy conversations", flush=True)
        healthy = server.create("healthy")
        seed(url_of(healthy), args.conversations, with_profiles=True, seed_value=1)
        server.checkpoint()
        count = bench_count(url_of(healthy), args.runs, deadline, Path(workdir))
        server.drop(healthy)
        print(f"seeding {args.conversations:,} orphaned conversations", flush=True)
        template = server.create("orphaned")
        seed(url_of(template), args.conversations, with_profiles=False, seed_value=2)
        if (orphans := orphan_count(url_of(template))) != args.conversations:
            raise RuntimeError(f"seeded {orphans} orphans, expected {args.conversations}")
        repair = bench_repair(
            server, template, args.conversations, args.repair_runs, args.batch_size, deadline
        )
        if args.profile:
            profile_repair(server, template, args.batch_size, Path(args.profile), deadline)
    section = report(args, command, machine, count, repair)
    print(section)
    if args.write:
        write_marked_section(Path(args.write), "ops", section)
    print(f"(took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
