"""HTTP throughput: Helpline against a bare baseline, one run, runs interleaved.

Seeds a database of its own with COPY (default 100,000 users, 50,000 conversations with
messages, a few admins, and never-seen customers for the cold path), then serves it with
`helpline serve` (uvicorn with uvloop and httptools, as in production) and with the bare
baseline of `bench.baseline` (the same SQL through psycopg2 on Starlette, no GraphQL), and
loads each from wrk (Debian's) with Lua-built POST bodies, over loopback, bounded in time.
The cold path's baseline is pgbench running Helpline's own transaction.

    make bench     # python -m bench.api [--users N] [--conversations N] [--duration S] ...

Every figure is the median of the rounds; contenders take turns within a round, in an order
that rotates, so a noisy moment hits all of them. Ratios compare figures of the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psycopg2

from bench import function_path, postgraphile
from bench.common import (
    METRICS_TOKEN,
    ROOT,
    SECRET,
    Server,
    bench_database,
    helpline_serve,
    machine,
    median,
    rss_mib,
    run_and_write,
    stop,
    wait_until_serving,
)
from gql.graphql.settings import DEFAULT_WELCOME_MESSAGE
from gql.ops.tokens import mint
from repo.config import DatabaseSettings
from repo.migrate import migrate

WRK_THREADS = 2
# Connections per server process: every contender's pool, pgbench and the seed fit in
# PostgreSQL's default max_connections (100) with room to spare.
POOL_SIZE = 20

HOT = "mutation ($c: UUID!) { adminConversation(customerId: $c) { conversation { id lastMessageAt admin { name } } } }"  # noqa: E501
HOT_READ = (
    "query ($c: UUID!) { adminConversation(customerId: $c) { id lastMessageAt admin { name } } }"
)
LIST = "query ($id: UUID!) { conversation(id: $id) { messages(first: 20) { edges { node { id content createdAt sender { id name avatarUrl } } } } } }"  # noqa: E501


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    query: str
    variable: str  # the variable each request fills from its ids file
    ids: str  # which ids file: "hot" (customer, conversation) pairs or a cold set
    sequential: bool = False  # each id once (cold) rather than at random (hot)


# PostGraphile's documents for the same workloads (its generated names, bench/postgraphile.py).
PEER_QUERIES = {
    "hot": postgraphile.COLD,  # get-or-create: for an existing customer, one read
    "hot-read": postgraphile.HOT_READ,
    "list": postgraphile.LIST,
    "cold": postgraphile.COLD,
}

WORKLOADS = (
    Workload("hot", "hot: `adminConversation` mutation, existing", HOT, "c", "hot"),
    Workload("hot-read", "hot read: `Query.adminConversation`", HOT_READ, "c", "hot"),
    Workload("list", "list: 20 newest messages with senders", LIST, "id", "list"),
    Workload("cold", "cold: first call, new customer", HOT, "c", "cold", sequential=True),
)


@dataclass
class Result:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    rss_mib: float | None = None
    errors: int = 0


@dataclass
class Series:
    """One contender on one workload: a result per round."""

    results: list[Result] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        values = [getattr(r, attribute) for r in self.results if getattr(r, attribute) is not None]
        return median(values) if values else float("nan")


# --- the dataset -------------------------------------------------------------------------


@dataclass
class Dataset:
    hot: list[tuple[str, str]]  # (customer id, conversation id)
    cold: dict[str, list[tuple[str, str]]]  # contender -> (customer id, email) never seen


def seed(url: str, args: argparse.Namespace, contenders: list[str]) -> Dataset:
    """COPY the dataset in; customers' profiles come from the users trigger, as in production."""
    migrate(DatabaseSettings(database_url=url))
    started = time.monotonic()
    now = datetime.now(UTC)
    admins = [str(uuid.uuid4()) for _ in range(args.admins)]
    customers = [str(uuid.uuid4()) for _ in range(args.users)]
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cursor:
        copy(cursor, "users (id, email, full_name)", (
            (user, f"{user}@bench.example", f"User {i}")
            for i, user in enumerate(admins + customers)
        ))  # fmt: skip
        cursor.execute("UPDATE profiles SET is_admin = true WHERE id = ANY(%s::uuid[])", (admins,))
        hot, message_rows = [], []
        conversation_rows = []
        for i, customer in enumerate(customers[: args.conversations]):
            conversation, admin = str(uuid.uuid4()), admins[i % len(admins)]
            start = now - timedelta(days=30, seconds=i)
            stamps = [start + timedelta(minutes=m) for m in range(args.messages)]
            conversation_rows.append((conversation, customer, admin, start, stamps[-1], stamps[-1]))
            for m, stamp in enumerate(stamps):
                sender = admin if m % 2 == 0 else customer
                message_rows.append(
                    (str(uuid.uuid4()), conversation, sender, f"message {m}", stamp)
                )
            hot.append((customer, conversation))
        copy(cursor, "conversations (id, customer_id, admin_id, created_at, updated_at, "
             "last_message_at)", conversation_rows)  # fmt: skip
        copy(cursor, "messages (id, conversation_id, sender_id, content, created_at)", message_rows)
        # Customers from before profiles existed: a users row, no profile (the trigger is off).
        cold = {name: [(str(uuid.uuid4()), "") for _ in range(args.cold)] for name in contenders}
        cold = {name: [(c, f"{c}@cold.example") for c, _ in ids] for name, ids in cold.items()}
        cursor.execute("ALTER TABLE users DISABLE TRIGGER users_create_profile")
        copy(cursor, "users (id, email)", (row for ids in cold.values() for row in ids))
        cursor.execute("ALTER TABLE users ENABLE TRIGGER users_create_profile")
        cursor.execute("CREATE TABLE bench_cold (n serial PRIMARY KEY, id uuid, email text)")
        copy(cursor, "bench_cold (id, email)", cold.get("pgbench", []))
        cursor.execute("CREATE SEQUENCE bench_cold_next")
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    conn.close()
    print(
        f"seeded {args.users:,} users, {len(hot):,} conversations, {len(message_rows):,} "
        f"messages, {sum(len(v) for v in cold.values()):,} cold customers "
        f"in {time.monotonic() - started:.1f} s",
        flush=True,
    )
    return Dataset(hot, cold)


def copy(cursor: Any, target: str, rows: Any) -> None:
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join(_copy_value(value) for value in row) + "\n")
    buffer.seek(0)
    cursor.copy_expert(f"COPY {target} FROM STDIN", buffer)


def _copy_value(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


# --- the contenders ------------------------------------------------------------------------


@contextmanager
def serving(
    name: str, command: list[str], env: dict[str, str], port: int, tmp: Path
) -> Iterator[Server]:
    log = tmp / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        probe = "/live" if name == "helpline" else "/graphql"
        wait_until_serving(f"http://127.0.0.1:{port}{probe}", process, log)
        yield Server(name, port, process, log)
    finally:
        stop(process)


def helpline_env(url: str, workers: int) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "JWT_SECRET": SECRET,
        "METRICS_TOKEN": METRICS_TOKEN,
        "APP_ENV": "production",
        "WEB_CONCURRENCY": str(workers),
        "DB_POOL_SIZE": str(POOL_SIZE),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def helpline(url: str, port: int, workers: int, tmp: Path) -> Any:
    env = helpline_env(url, workers)
    return serving("helpline", helpline_serve(port, workers), env, port, tmp)


def function_contender(url: str, port: int, workers: int, tmp: Path) -> Any:
    """Helpline with the first contact as one PL/pgSQL call, as before issue #14
    (bench/function_path.py), served as `helpline serve` serves: the cold path's contender."""
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(function_path.function_sql())
    conn.close()
    command = uvicorn_command("bench.function_path:create_app", port, workers, factory=True)
    env = helpline_env(url, workers)
    return serving("function", command, env, port, tmp)


def uvicorn_command(app: str, port: int, workers: int, *, factory: bool = False) -> list[str]:
    """uvicorn serving ``app`` quietly, for a contender that is not `helpline serve`."""
    return [
        str(Path(sys.executable).parent / "uvicorn"),
        app,
        *(["--factory"] if factory else []),
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def baseline(url: str, port: int, workers: int, tmp: Path) -> Any:
    env = {**os.environ, "DATABASE_URL": url, "BASELINE_POOL_SIZE": str(POOL_SIZE)}
    command = uvicorn_command("bench.baseline:app", port, workers)
    return serving("baseline", command, env, port, tmp)


# --- load ---------------------------------------------------------------------------------

LUA = """
local lines = {}
for line in io.lines("%(ids)s") do lines[#lines + 1] = line end
local prefix, suffix = %(prefix)s, %(suffix)s
local sequential = %(sequential)s
local counter = 0
local threads = 0
function setup(thread)
  thread:set("offset", threads)
  threads = threads + 1
end
function init(args)
  math.randomseed(os.time() + offset)
end
function request()
  local line
  if sequential then
    line = lines[(counter * %(threads)d + offset) %% #lines + 1]
    counter = counter + 1
  else
    line = lines[math.random(#lines)]
  end
  local token, id = line:match("(%%S+) (%%S+)")
  return wrk.format("POST", "/graphql", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,%(extra)s
  }, prefix .. id .. suffix)
end
"""
_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_TOTAL = re.compile(r"(\d+) requests in")
_PERCENTILE = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\b", re.M)
_ERRORS = re.compile(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)")


def lua_script(
    tmp: Path,
    workload: Workload,
    ids: Path,
    name: str = "helpline",
    headers: dict[str, str] | None = None,
) -> Path:
    """wrk's script for a workload; ``headers``: more request headers (e.g. a browser's Origin)."""
    query = PEER_QUERIES[workload.name] if name == "postgraphile" else workload.query
    body = json.dumps({"query": query, "variables": {workload.variable: "@@"}})
    prefix, suffix = body.split("@@")
    extra = "".join(
        f"\n    [{json.dumps(k)}] = {json.dumps(v)}," for k, v in (headers or {}).items()
    )
    script = tmp / f"{name}-{workload.name}{'-extra' if headers else ''}.lua"
    script.write_text(
        LUA
        % {
            "ids": ids,
            "prefix": json.dumps(prefix),  # a JSON string is a valid Lua string here
            "suffix": json.dumps(suffix),
            "sequential": "true" if workload.sequential else "false",
            "threads": WRK_THREADS,
            "extra": extra,
        }
    )
    return script


def wrk(base: str, script: Path, concurrency: int, duration: float) -> Result:
    """Load ``base`` with wrk for ``duration`` seconds; wrk's --latency percentiles."""
    completed = subprocess.run(
        [
            "wrk",
            f"-t{WRK_THREADS}",
            f"-c{max(concurrency, WRK_THREADS)}",
            f"-d{round(duration)}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            base,
        ],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed: {completed.stderr or completed.stdout}")
    output = completed.stdout
    rate = _RATE.search(output)
    total = _TOTAL.search(output)
    if not rate or not total:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    percentiles = {q: _to_ms(value, unit) for q, value, unit in _PERCENTILE.findall(output)}
    errors = sum(int(m.group(1)) for m in _ERRORS.finditer(output) if m.group(1))
    if (socket := re.search(r"Socket errors: (.*)", output)) and "timeout 0" not in socket.group(1):
        errors += 1
    return Result(
        float(rate.group(1)),
        percentiles["50"],
        percentiles["99"],
        int(total.group(1)),
        errors=errors,
    )


def _to_ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def graphql_errors(base: str) -> float:
    """Helpline's count of GraphQL errors so far (from /metrics)."""
    text = httpx.get(
        f"{base}/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10
    ).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("helpline_graphql_errors_total{")
    )


_VIEW = """SELECT "t1"."id", "t1"."created_at", "t1"."updated_at", "t1"."last_message_at", "customer"."id", "customer"."name", "customer"."avatar_url", "customer"."is_admin", "customer"."is_online", "admin"."id", "admin"."name", "admin"."avatar_url", "admin"."is_admin", "admin"."is_online" FROM "conversations" AS "t1" INNER JOIN "profiles" AS "customer" ON ("t1"."customer_id" = "customer"."id") INNER JOIN "profiles" AS "admin" ON ("t1"."admin_id" = "admin"."id") WHERE ("t1"."customer_id" = ':cid') LIMIT 1;"""  # noqa: E501
# Helpline's cold path, statement for statement as the driver sends it (recorded with
# tests/integration/test_first_contact.py's cursor): the read that finds nothing, then the
# first contact's transaction (the customers have users rows: no users insert). The message
# id Helpline makes in Python is gen_random_uuid() here; pgbench's \\gset carries the new
# conversation's id and admin to the next line.
PGBENCH_COLD = f"""
SELECT id AS cid FROM bench_cold WHERE n = (SELECT nextval('bench_cold_next')) \\gset
{_VIEW}
SET LOCAL synchronous_commit = off \\; SELECT pg_advisory_xact_lock(1751477360) \\; INSERT INTO "admin_conversation_counts" ("admin_id", "conversation_count") SELECT "admin"."id", 1 FROM "profiles" AS "admin" LEFT OUTER JOIN "admin_conversation_counts" AS "admin_conversation_counts" ON ("admin_conversation_counts"."admin_id" = "admin"."id") WHERE ("admin"."is_admin" AND ("admin"."id" != ':cid')) ORDER BY "admin"."is_online" DESC, COALESCE("admin_conversation_counts"."conversation_count", 0), "admin"."created_at", "admin"."id" LIMIT 1 ON CONFLICT ("admin_id") DO UPDATE SET "conversation_count" = ("admin_conversation_counts"."conversation_count" + 1) RETURNING "admin_conversation_counts"."admin_id" AS adm \\gset
BEGIN;
INSERT INTO "profiles" ("id", "name", "avatar_url") SELECT "t1"."id", COALESCE(NULLIF("t1"."full_name", ''), "t1"."email", 'User'), COALESCE("t1"."profile_picture_url", '') FROM "users" AS "t1" WHERE ("t1"."id" = ':cid') ON CONFLICT ("id") DO NOTHING RETURNING "profiles"."id";
SELECT "t1"."id" FROM "profiles" AS "t1" WHERE ("t1"."id" = ':cid') LIMIT 1 FOR UPDATE;
SELECT "t1"."id" FROM "conversations" AS "t1" WHERE ("t1"."customer_id" = ':cid') LIMIT 1;
INSERT INTO "conversations" ("customer_id", "admin_id") VALUES (':cid', ':adm') RETURNING "conversations"."id" AS conv \\gset
WITH stored AS (INSERT INTO messages (id, conversation_id, sender_id, content, created_at, client_message_id) SELECT gen_random_uuid(), c.id, ':adm'::uuid, '%(welcome)s', GREATEST(clock_timestamp(), c.last_message_at + interval '1 microsecond'), NULL FROM conversations c WHERE c.id = ':conv' RETURNING id, conversation_id, created_at), bumped AS (UPDATE conversations SET last_message_at = stored.created_at, updated_at = stored.created_at FROM stored WHERE conversations.id = stored.conversation_id) SELECT created_at, pg_notify('helpline_messages', ':conv:' || stored.id) FROM stored;
COMMIT;
{_VIEW}
"""  # noqa: E501


def pgbench_cold(url: str, tmp: Path, concurrency: int, duration: float) -> Result:
    """pgbench running Helpline's cold-path transaction, one new customer per transaction."""
    script = tmp / "cold.sql"
    script.write_text(PGBENCH_COLD % {"welcome": DEFAULT_WELCOME_MESSAGE.replace("'", "''")})
    completed = subprocess.run(
        [
            "pgbench",
            "-n",
            "-f",
            str(script),
            "-c",
            str(concurrency),
            "-j",
            str(WRK_THREADS),
            "-T",
            str(int(duration)),
            "-r",
            "--log",
            "--log-prefix",
            str(tmp / "pgbench"),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
        cwd=tmp,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"pgbench failed: {completed.stderr[-2000:]}")
    output = completed.stdout
    tps = re.search(r"tps = ([\d.]+)", output)
    done = re.search(r"number of transactions actually processed: (\d+)", output)
    failed = re.search(r"number of failed transactions: (\d+)", output)
    if not tps or not done:
        raise RuntimeError(f"unexpected pgbench output:\n{output}")
    latencies = sorted(
        int(line.split()[2]) / 1000
        for log in tmp.glob("pgbench.*")
        for line in log.read_text().splitlines()
    )
    for log in tmp.glob("pgbench.*"):
        log.unlink()
    return Result(
        float(tps.group(1)),
        latencies[len(latencies) // 2],
        latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        int(done.group(1)),
        errors=int(failed.group(1)) if failed else 0,
    )


# --- the run ------------------------------------------------------------------------------


def ids_files(tmp: Path, data: Dataset, contenders: list[str]) -> dict[tuple[str, str], Path]:
    """Per contender and workload kind: lines of "token id" for wrk's Lua to pick from."""
    files: dict[tuple[str, str], Path] = {}
    hot_lines = [f"{token(c)} {c}" for c, _ in data.hot]
    list_lines = [f"{token(c)} {conversation}" for c, conversation in data.hot]
    for name in contenders:
        for kind, lines in (("hot", hot_lines), ("list", list_lines)):
            path = tmp / f"{kind}.ids"
            path.write_text("\n".join(lines) + "\n")
            files[name, kind] = path
        if name in data.cold:
            path = tmp / f"cold-{name}.ids"
            path.write_text("".join(f"{token(c, e)} {c}\n" for c, e in data.cold[name]))
            files[name, "cold"] = path
    return files


def token(customer: str, email: str | None = None) -> str:
    """The customer's own token, as the chat widget sends it (with its email when new)."""
    claims = {"email": email} if email else {}
    return mint(SECRET, role="authenticated", sub=customer, expires_in=3 * 3600, **claims)


def unserved(url: str, ids: Path) -> list[str]:
    """The lines of an ids file whose customer has no conversation yet."""
    lines = ids.read_text().splitlines(keepends=True)
    customers = [line.split()[1] for line in lines]
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT customer_id::text FROM conversations WHERE customer_id = ANY(%s::uuid[])",
            (customers,),
        )
        served = {row[0] for row in cursor.fetchall()}
    remaining = [line for line, c in zip(lines, customers, strict=True) if c not in served]
    if len(remaining) < len(lines) // 4:
        raise RuntimeError("bench: the cold customers are nearly used up; raise --cold")
    return remaining


def created_for(url: str, customers: list[tuple[str, str]]) -> int:
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM conversations WHERE customer_id = ANY(%s::uuid[])",
            ([c for c, _ in customers],),
        )
        return int(cursor.fetchone()[0])


def run(args: argparse.Namespace) -> str:
    contenders = [
        "helpline",
        "baseline",
        *(["function"] if "cold" in args.workloads else []),
        *(["postgraphile"] if args.postgraphile else []),
    ]
    if args.postgraphile:
        postgraphile.install()
    with bench_database("helpline_bench_api") as url, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = seed(url, args, [*contenders, "pgbench"])
        files = ids_files(tmp, data, contenders)
        ports = {name: 18100 + i + os.getpid() % 500 * 3 for i, name in enumerate(contenders)}
        series: dict[tuple[str, str], Series] = {}
        sweep: dict[tuple[str, int], Series] = {}
        with contextlib.ExitStack() as stack:
            servers = {
                "helpline": stack.enter_context(
                    helpline(url, ports["helpline"], args.workers, tmp)
                ),
                "baseline": stack.enter_context(
                    baseline(url, ports["baseline"], args.workers, tmp)
                ),
            }
            if args.postgraphile:
                postgraphile.prepare(url)
                peer = stack.enter_context(
                    postgraphile.serving(url, ports["postgraphile"], tmp, pool_size=POOL_SIZE)
                )
                servers["postgraphile"] = peer
            check_answers(servers, data)
            for round_ in range(args.rounds):
                turn = round_ % len(contenders)
                order = contenders[turn:] + contenders[:turn]
                for workload in (w for w in WORKLOADS if w.name in args.workloads):
                    for name in order:
                        if name == "function" and workload.name != "cold":
                            continue  # it differs from Helpline on the cold path only
                        if name == "function":  # served only while measured: its pool and
                            # pgbench's clients need not fit in max_connections at once
                            with function_contender(
                                url, ports["function"], args.workers, tmp
                            ) as server:
                                serving_now = {**servers, name: server}
                                result = measure(name, serving_now, workload, files, url, tmp, args)
                        else:
                            result = measure(name, servers, workload, files, url, tmp, args)
                        series.setdefault((workload.name, name), Series()).results.append(result)
                    print(
                        f"round {round_ + 1}: {workload.name}: "
                        + ", ".join(
                            f"{n} {series[workload.name, n].results[-1].requests_per_s:,.0f}/s"
                            for n in [*order, "pgbench"]
                            if (workload.name, n) in series
                        ),
                        flush=True,
                    )
                for concurrency in args.sweep:
                    for name in (n for n in order if n != "function"):
                        script = lua_script(tmp, WORKLOADS[0], files[name, "hot"], name)
                        result = wrk(servers[name].base, script, concurrency, args.duration)
                        sweep.setdefault((name, concurrency), Series()).results.append(result)
        for name in (n for n in ("helpline", "function") if n in data.cold):  # those in the run
            cold = series["cold", name].results if ("cold", name) in series else []
            if created_for(url, data.cold[name]) < sum(r.requests for r in cold):
                raise RuntimeError(f"{name}: fewer cold conversations than cold requests served")
    plot_path = Path(args.write).parent / "bench" / "throughput.png"  # beside BENCHMARKS.md
    plot_path.parent.mkdir(parents=True, exist_ok=True)
    plot(sweep, args, plot_path)
    return report(series, sweep, args)


def measure(
    name: str,
    servers: dict[str, Server],
    workload: Workload,
    files: dict[tuple[str, str], Path],
    url: str,
    tmp: Path,
    args: argparse.Namespace,
) -> Result:
    if workload.name == "cold" and name == "baseline":
        result = pgbench_cold(url, tmp, args.concurrency, args.duration)
        result.rss_mib = None
        return result
    server = servers[name]
    ids = files[name, workload.ids]
    if workload.sequential:  # only customers no earlier run has served: each is new once
        ids.write_text("".join(line for line in unserved(url, ids) if line))
    script = lua_script(tmp, workload, ids, name)
    counted = name in ("helpline", "function")  # both export Helpline's metrics
    errors_before = graphql_errors(server.base) if counted else 0.0
    result = wrk(server.base, script, args.concurrency, args.duration)
    if counted:
        result.errors += int(graphql_errors(server.base) - errors_before)
    result.rss_mib = rss_mib(server.process.pid)
    if result.errors:
        raise RuntimeError(f"{name} {workload.name}: {result.errors} errors under load")
    return result


def check_answers(servers: dict[str, Server], data: Dataset) -> None:
    """Both contenders give the same answer to the same request before any is timed."""
    customer, conversation = data.hot[0]
    for workload, value in ((WORKLOADS[0], customer), (WORKLOADS[2], conversation)):
        answers = []
        for name, server in servers.items():
            query = PEER_QUERIES[workload.name] if name == "postgraphile" else workload.query
            response = httpx.post(
                f"{server.base}/graphql",
                json={"query": query, "variables": {workload.variable: value}},
                headers={"authorization": f"Bearer {token(customer)}"},
                timeout=10,
            )
            if response.status_code != 200:
                raise RuntimeError(
                    f"{server.name}: HTTP {response.status_code}: {response.text[:300]}\n"
                    + server.log.read_text()[-3000:]
                )
            answers.append(response.json())
        if answers[0] != answers[1]:  # Helpline and the baseline answer in the same shape
            raise RuntimeError(f"{workload.name}: answers differ: {answers}")
        if any("errors" in answer or not answer.get("data") for answer in answers):
            raise RuntimeError(f"{workload.name}: an error answer: {answers}")


def plot(sweep: dict[tuple[str, int], Series], args: argparse.Namespace, path: Path) -> None:
    import matplotlib  # noqa: PLC0415  only the bench needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(figsize=(7, 4))
    for name in sorted({n for n, _ in sweep}):
        levels = sorted(c for n, c in sweep if n == name)
        axes.plot(
            levels,
            [sweep[name, c].median("requests_per_s") for c in levels],
            marker="o",
            label=name,
        )
    axes.set_xscale("log", base=2)
    axes.set_xlabel("concurrent connections (wrk)")
    axes.set_ylabel("requests/s (median of rounds)")
    axes.set_title(f"hot path, {args.workers} worker(s), 2 cores shared with PostgreSQL and wrk")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


TARGETS = {"hot": 0.8, "hot-read": 0.8, "cold": 0.7, "list": 0.7}


def report(
    series: dict[tuple[str, str], Series],
    sweep: dict[tuple[str, int], Series],
    args: argparse.Namespace,
) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## HTTP API: throughput against a bare baseline",
        "",
        f"Measured {when} on {machine()}, by `make bench` (`python -m bench.api "
        f"--users {args.users} --conversations {args.conversations} --duration {args.duration} "
        f"--rounds {args.rounds} --concurrency {args.concurrency}`), {args.workers} uvicorn "
        "worker(s) per server. Load: wrk, 2 threads, "
        f"{args.concurrency} connections, {args.duration:g} s per run, over loopback; each "
        "request is a customer's own token and a random customer of the dataset (cold: each "
        "new customer once). Figures are medians over the rounds; the contenders take turns "
        "within each round. The baseline is `bench/baseline.py` (Starlette + psycopg2 in the "
        "thread pool, the same SQL, no GraphQL, no token check); for the cold path it is "
        "pgbench running Helpline's own cold-path transaction at the same concurrency.",
        "",
        "| workload | Helpline req/s | p50 ms | p99 ms | RSS MiB | baseline req/s | p50 ms | "
        "p99 ms | RSS MiB | ratio | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for workload in (w for w in WORKLOADS if (w.name, "helpline") in series):
        ours, base = series[workload.name, "helpline"], series[workload.name, "baseline"]
        ratio = ours.median("requests_per_s") / base.median("requests_per_s")
        target = TARGETS[workload.name]
        lines.append(
            f"| {workload.title} | {ours.median('requests_per_s'):,.0f} | "
            f"{ours.median('p50_ms'):.2f} | {ours.median('p99_ms'):.2f} | "
            f"{ours.median('rss_mib'):.0f} | {base.median('requests_per_s'):,.0f} | "
            f"{base.median('p50_ms'):.2f} | {base.median('p99_ms'):.2f} | "
            + (f"{base.median('rss_mib'):.0f}" if workload.name != "cold" else "n/a")
            + f" | **{ratio:.2f}x** | >= {target}x {'met' if ratio >= target else 'missed'} |"
        )
    if ("cold", "function") in series:
        ours = series["cold", "helpline"].median("requests_per_s")
        lines += [
            "",
            "The cold path (issues #14 and #16): Helpline's first contact is one Peewee block in "
            "Python: after the read that finds nothing, ensure the profile, "
            "`SELECT ... FOR UPDATE`, look for the conversation under the lock, insert the "
            "conversation, the welcome message, `COMMIT`, the read, after one round trip of its "
            "own that takes the admin-choice lock and chooses and counts the admin (three "
            "statements, one implicit transaction): ten round trips, where the function path "
            "(which always chose the oldest admin) makes three. (a) is pgbench sending those "
            "same statements; (b) is Helpline's first contact before #14, one PL/pgSQL call "
            "(`bench/function_path.py`), served the same way in the same run.",
            "",
            "| cold path | req/s | p50 ms | p99 ms | Helpline / it | target |",
            "|---|---|---|---|---|---|",
        ]
        for title, name, target in (
            ("Helpline (Python block)", "helpline", None),
            ("(a) pgbench, the same statements", "baseline", 0.6),
            ("(b) Helpline with the PL/pgSQL function", "function", 0.8),
        ):
            figures = series["cold", name]
            rate = figures.median("requests_per_s")
            verdict = (
                ""
                if target is None
                else f">= {target}x {'met' if ours / rate >= target else 'missed'}"
            )
            lines.append(
                f"| {title} | {rate:,.0f} | {figures.median('p50_ms'):.2f} | "
                f"{figures.median('p99_ms'):.2f} | "
                + ("" if name == "helpline" else f"**{ours / rate:.2f}x**")
                + f" | {verdict} |"
            )
    if any(name == "postgraphile" for _, name in series):
        lines += [
            "",
            "The peer users would pick instead: PostGraphile 4 (`bench/postgraphile.py`), one "
            "Node process on the same database in the same run, its own documents for the same "
            "reads (`conversationByCustomerId`, `messagesByConversationId`) and, for the "
            "mutations, Helpline's transaction as a PL/pgSQL function "
            "(`benchAdminConversation`). It verifies no token, like the baseline.",
            "",
            "| workload | PostGraphile req/s | p50 ms | p99 ms | RSS MiB "
            "| Helpline / PostGraphile |",
            "|---|---|---|---|---|---|",
        ]
        for workload in (w for w in WORKLOADS if (w.name, "postgraphile") in series):
            ours, peer = series[workload.name, "helpline"], series[workload.name, "postgraphile"]
            lines.append(
                f"| {workload.title} | {peer.median('requests_per_s'):,.0f} | "
                f"{peer.median('p50_ms'):.2f} | {peer.median('p99_ms'):.2f} | "
                f"{peer.median('rss_mib'):.0f} | "
                f"**{ours.median('requests_per_s') / peer.median('requests_per_s'):.2f}x** |"
            )
    levels = sorted({c for _, c in sweep})
    lines += [
        "",
        "Throughput against concurrency, hot path (`bench/throughput.png`):",
        "",
        "| connections | " + " | ".join(str(c) for c in levels) + " |",
        "|---|" + "---|" * len(levels),
    ]
    for name in sorted({n for n, _ in sweep}):
        lines.append(
            f"| {name} req/s | "
            + " | ".join(f"{sweep[name, c].median('requests_per_s'):,.0f}" for c in levels)
            + " |"
        )
    lines += ["", "![hot path throughput against concurrency](bench/throughput.png)", ""]
    return "\n".join(lines)


def load_arguments(
    parser: argparse.ArgumentParser, *, users: int, conversations: int, cold: int
) -> None:
    """The dataset's and the load's options, shared by the benches that use this dataset."""
    parser.add_argument("--users", type=int, default=users)
    parser.add_argument("--conversations", type=int, default=conversations)
    parser.add_argument("--messages", type=int, default=6, help="per conversation")
    parser.add_argument("--admins", type=int, default=5)
    parser.add_argument("--cold", type=int, default=cold, help="new customers per contender")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "1")))
    parser.add_argument("--write", default=str(ROOT / "BENCHMARKS.md"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    load_arguments(parser, users=100_000, conversations=50_000, cold=60_000)
    parser.add_argument(
        "--sweep", type=lambda s: [int(c) for c in s.split(",")], default=[1, 4, 16, 64]
    )
    parser.add_argument(
        "--no-postgraphile", dest="postgraphile", action="store_false", help="two contenders"
    )
    parser.add_argument(
        "--workloads",
        type=lambda s: s.split(","),
        default=[w.name for w in WORKLOADS],
        help="a comma-separated subset, e.g. cold (a trial run: the table then lacks the rest)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench: wrk is missing (make bench installs Debian's wrk)", file=sys.stderr)
        return 2
    return run_and_write(lambda: run(args), Path(args.write))


if __name__ == "__main__":
    sys.exit(main())
