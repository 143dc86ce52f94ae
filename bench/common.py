"""What the benchmarks share: a database of their own, server processes, and BENCHMARKS.md."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID, uuid4

import httpx2 as httpx
import psycopg2

from gql.http.settings import Settings
from repo.conversations import get_or_create_admin_conversation
from repo.database import close_database, open_database
from repo.migrate import migrate
from repo.models import Profile, User

ROOT = Path(__file__).resolve().parents[1]
SERVER_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# What the benchmarked servers are started with: tokens are minted with SECRET, and /metrics
# is read with METRICS_TOKEN.
SECRET = "bench-secret-" + "x" * 40
METRICS_TOKEN = secrets.token_urlsafe(24)


@contextlib.contextmanager
def bench_database(prefix: str, *, template: str | None = None) -> Iterator[str]:
    """A database of this run's own on BENCH_DATABASE_URL, dropped at the end; yields its URL."""
    name = f"{prefix}_{os.getpid()}"
    admin = psycopg2.connect(SERVER_URL)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
    try:
        yield urlunsplit(urlsplit(SERVER_URL)._replace(path=f"/{name}"))
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def machine() -> str:
    """One line on where the figures were measured."""
    with psycopg2.connect(SERVER_URL) as conn, conn.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"PostgreSQL {version.split()[0]} on loopback"
    )


@dataclass
class Server:
    """A server process a benchmark started, on a loopback port."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def helpline_serve(port: int, workers: int, host: str = "127.0.0.1") -> list[str]:
    """The command that serves Helpline as production does (`helpline serve`, the Procfile's)."""
    helpline = str(Path(sys.executable).parent / "helpline")
    return [helpline, "serve", "--host", host, "--port", str(port), "--workers", str(workers)]


def wait_until_serving(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Return once ``url`` answers; raise with the log's tail if the process dies or stalls."""
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline or process.poll() is not None:
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise RuntimeError(f"server did not start: {tail}") from None
            time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    """End a server this run started: politely, then for sure."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=20)


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn workers), in MiB."""
    total_kib = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            status = Path(f"/proc/{current}/status").read_text()
            total_kib += next(
                int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")
            )
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                pending.extend(int(child) for child in children)
    return total_kib / 1024


def write_section(path: Path, section: str) -> None:
    """Replace the section of BENCHMARKS.md with the same "## " title, keeping the others."""
    title = section.splitlines()[0]
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if title in text:
        start = text.index(title)
        ends = [
            i for i in (text.find("\n## ", start + 1), text.find("\n<!--", start + 1)) if i != -1
        ]
        end = min(ends) if ends else -1  # the next section, or another writer's marker
        text = text[:start] + section.rstrip("\n") + "\n" + (text[end:] if end != -1 else "")
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)


def write_marked_section(path: Path, name: str, section: str) -> None:
    """Put ``section`` between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``path``.

    A writer that replaces its own section up to the next "## " title eats the start marker
    that follows it, so the old section is found by its end marker or title as well.
    """
    start_marker, end_marker = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{start_marker}\n{section.rstrip()}\n{end_marker}"
    title = section.splitlines()[0]
    found = [i for i in (text.find(start_marker), text.find(title)) if i != -1]
    if not found:
        path.write_text(text.rstrip("\n") + "\n\n" + block + "\n")
        return
    start = min(found)
    end = text.find(end_marker, start)
    if end != -1:
        end += len(end_marker)
    else:
        end = text.find("\n## ", start + 1) + 1 or len(text)
    path.write_text(text[:start] + block + text[end:])


def loopback(index: int) -> str:
    """The index-th load client's own source address: the whole of 127.0.0.0/8 is loopback
    on Linux, so the load comes from many addresses, as a help desk's customers do, and a
    burst of connects never meets WS_MAX_PENDING_PER_ADDRESS (20 per address)."""
    return f"127.1.{index // 250 % 250}.{index % 250 + 1}"


async def subscribe_over_websocket(
    socket: Any, token: str, query: str, variables: dict[str, Any]
) -> None:
    """graphql-transport-ws on an open socket: connection_init with the token, wait for the
    ack, then one subscribe (id "1")."""
    init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
    await socket.send(json.dumps(init))
    await socket.recv()
    payload = {"query": query, "variables": variables}
    await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))


def run_and_write(run: Callable[[], str], path: Path) -> int:
    """Run a bench, print its BENCHMARKS.md section, write it into ``path``; exit status 0."""
    started = time.monotonic()
    section = run()
    print(section)
    write_section(path, section)
    print(f"(took {time.monotonic() - started:.0f} s)")
    return 0


@contextlib.contextmanager
def seeding(url: str) -> Iterator[Settings]:
    """The database at ``url`` migrated and bound to the repository while the block runs."""
    settings = Settings.of(database_url=url)
    migrate(settings.database)
    open_database(settings.database)
    try:
        yield settings
    finally:
        close_database()


def add_admin(email: str, full_name: str) -> UUID:
    """A users row (its profile made by the sign-up trigger), promoted to admin."""
    admin = uuid4()
    User.insert(id=admin, email=email, full_name=full_name).execute()
    Profile.update(is_admin=True).where(Profile.id == admin).execute()
    return admin


def add_customers_with_conversations(count: int, welcome_message: str) -> list[tuple[UUID, str]]:
    """``count`` customers (c0@example.com, ...), each with its admin conversation opened:
    (customer id, conversation id) each."""
    made = []
    for i in range(count):
        customer = uuid4()
        User.insert(id=customer, email=f"c{i}@example.com").execute()
        opened = get_or_create_admin_conversation(customer, welcome_message=welcome_message)
        made.append((customer, str(opened.conversation.id)))
    return made
