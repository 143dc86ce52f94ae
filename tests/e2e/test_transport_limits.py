"""A stranger cannot exhaust a process at the HTTP transport (issue #23): request heads are
bounded in size and time, bodies in time, and idle connections cannot lock requests out.

Each attack is sent over raw sockets to a real `helpline serve` (gql/http/transport.py)."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit

import httpx2 as httpx
import pytest

from gql.http.settings import Settings
from repo.database import sqlite_path
from repo.demo import CUSTOMER, LEGACY_CUSTOMER, DemoUser
from tests.conftest import settings_for
from tests.e2e.conftest import Server, free_port, running_server, service_token
from tests.e2e.test_observability import metric
from tests.e2e.wsclient import Subscription

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]
GUARD_S = 5.0  # against hanging, never a speed assertion
DEADLINE_S = 1.0  # HEADER_TIMEOUT_SECONDS and BODY_TIMEOUT_SECONDS of the quick server
MAX_CONNECTIONS = 50
LIVE = b"GET /live HTTP/1.1\r\nHost: helpline\r\n"
PING = "{ integrity { orphanedConversationCount } }"
OPEN = "mutation ($c: UUID!) { adminConversation(customerId: $c) { created } }"
STALLED_BODY = (
    b"POST /graphql HTTP/1.1\r\nHost: helpline\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100\r\n\r\n{"
)


def own_sqlite(tmp_path_factory: pytest.TempPathFactory, name: str) -> Settings:
    """A SQLite file of its own (`helpline serve` migrates and seeds it): a module's server can
    run beside another test's, which SQLite's one-serving-process claim would refuse."""
    return settings_for(f"sqlite:///{tmp_path_factory.mktemp(name) / 'helpline.db'}")


@pytest.fixture(scope="module")
def quick_db(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return own_sqlite(tmp_path_factory, "quick")


@pytest.fixture(scope="module")
def quick(quick_db: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose heads and bodies must arrive within a second."""
    with running_server(
        quick_db,
        tmp_path_factory.mktemp("quick-log") / "server.log",
        HEADER_TIMEOUT_SECONDS=str(DEADLINE_S),
        BODY_TIMEOUT_SECONDS=str(DEADLINE_S),
    ) as server:
        yield server


@pytest.fixture(scope="module")
def crowded_db(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return own_sqlite(tmp_path_factory, "crowded")


@pytest.fixture(scope="module")
def crowded(crowded_db: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that holds MAX_CONNECTIONS connections (and the default deadlines)."""
    with running_server(
        crowded_db,
        tmp_path_factory.mktemp("crowded-log") / "server.log",
        MAX_CONNECTIONS=str(MAX_CONNECTIONS),
    ) as server:
        yield server


@contextmanager
def write_lock(db: Settings) -> Iterator[None]:
    """SQLite's write lock, held: a first contact waits for it (SQLITE_BUSY_TIMEOUT_MS)."""
    lock = sqlite3.connect(sqlite_path(db.database.database_url), isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        lock.rollback()
        lock.close()


def first_contact(customer: DemoUser) -> bytes:
    """An operator opening a demo customer's first conversation: a write."""
    body = json.dumps({"query": OPEN, "variables": {"c": str(customer.id)}}).encode()
    return (
        b"POST /graphql HTTP/1.1\r\nHost: helpline\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + service_token().encode() + b"\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body
    )


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", urlsplit(server.url).port or 80))
    sock.settimeout(GUARD_S)
    return sock


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """One response's status and body (its content-length), or (0, b"") on a closed socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, b""
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers.get("content-length", "0")):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), body


def status_of(server: Server, request: bytes) -> int:
    with closing(connect(server)) as sock:
        sock.sendall(request)
        return read_response(sock)[0]


def trickle(sock: socket.socket, data: bytes, interval_s: float = 0.05) -> None:
    """Send ``data`` a byte at a time, in the background, until it is sent or refused."""

    def send() -> None:
        for byte in data:
            try:
                sock.send(bytes([byte]))
            except OSError:
                return
            time.sleep(interval_s)

    threading.Thread(target=send, daemon=True).start()


def closed_by_server(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def closures(server: Server, reason: str) -> float:
    """Connections the server closed for ``reason``, by its metrics."""
    text = httpx.get(f"{server.base}/metrics", timeout=GUARD_S).text
    return metric(text, "helpline_http_connections_closed_total", missing=0.0, reason=reason)


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return (
        next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        / 1024
    )


def test_headers_larger_than_max_header_bytes_get_431_and_hold_no_memory(quick: Server) -> None:
    """Four 16 MB Authorization headers at once: each is cut off at 32 KiB."""
    refused_before = closures(quick, "head_too_large")
    before = rss_mib(quick.pid)
    peak = before
    attacking = True

    def sample() -> None:
        nonlocal peak
        while attacking:
            peak = max(peak, rss_mib(quick.pid))
            time.sleep(0.005)

    statuses: list[int] = []

    def attack() -> None:
        with closing(connect(quick)) as sock:
            with suppress(OSError):  # refused before it was all sent: the answer is there
                sock.sendall(LIVE + b"Authorization: Bearer " + b"a" * (16 * 1024 * 1024))
            statuses.append(read_response(sock)[0])

    sampler = threading.Thread(target=sample)
    sampler.start()
    attackers = [threading.Thread(target=attack) for _ in range(4)]
    for thread in attackers:
        thread.start()
    live = httpx.get(f"{quick.base}/live", timeout=GUARD_S)
    for thread in attackers:
        thread.join()
    attacking = False
    sampler.join()
    assert peak - before < 50, f"RSS grew from {before:.0f} to {peak:.0f} MiB"
    assert statuses == [431] * 4
    assert live.status_code == 200
    assert closures(quick, "head_too_large") == refused_before + 4


def test_more_headers_than_max_headers_get_431(quick: Server) -> None:
    def with_headers(count: int) -> bytes:
        return LIVE + b"".join(b"X-Filler-%d: 1\r\n" % i for i in range(count)) + b"\r\n"

    assert status_of(quick, with_headers(98)) == 200  # with Host, 99
    assert status_of(quick, with_headers(101)) == 431


def test_a_malformed_head_past_the_limit_is_a_bad_request_not_a_large_one(quick: Server) -> None:
    before = closures(quick, "head_too_large")
    with closing(connect(quick)) as sock:
        sock.sendall(LIVE + b"Bad Header: 1\r\nX-Padding: " + b"a" * 40_000)
        assert read_response(sock)[0] == 400
    assert closures(quick, "head_too_large") == before


def test_a_request_line_longer_than_max_request_line_bytes_gets_414(quick: Server) -> None:
    def with_query(length: int) -> bytes:
        return b"GET /live?q=" + b"a" * length + b" HTTP/1.1\r\nHost: helpline\r\n\r\n"

    assert status_of(quick, with_query(8000)) == 200
    assert status_of(quick, with_query(9000)) == 414


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    quick: Server,
) -> None:
    with closing(connect(quick)) as sock:
        opened = time.monotonic()
        assert sock.recv(1024) == b""  # closed, without an answer to nobody's request
        assert time.monotonic() - opened >= DEADLINE_S * 0.9


def test_headers_trickled_byte_by_byte_get_408_at_the_header_timeout(quick: Server) -> None:
    with closing(connect(quick)) as sock:
        opened = time.monotonic()
        trickle(sock, LIVE + b"X-Slow: " + b"a" * 1000 + b"\r\n\r\n")
        assert read_response(sock)[0] == 408
        assert DEADLINE_S * 0.9 <= time.monotonic() - opened < DEADLINE_S + 2


def test_a_kept_alive_connection_serves_requests_and_times_each_head_from_its_first_byte(
    quick: Server,
) -> None:
    with closing(connect(quick)) as sock:
        sock.sendall(LIVE + b"\r\n")
        assert read_response(sock)[0] == 200
        time.sleep(DEADLINE_S * 1.5)  # idle between requests: uvicorn's keep-alive, not ours
        sock.sendall(LIVE + b"\r\n" + LIVE + b"\r\n")  # pipelined
        assert read_response(sock)[0] == 200
        assert read_response(sock)[0] == 200
        sock.sendall(LIVE)  # a head that never ends
        started = time.monotonic()
        assert read_response(sock)[0] == 408
        assert time.monotonic() - started < DEADLINE_S + 2


def test_a_trickled_body_is_cut_at_the_body_timeout(quick: Server) -> None:
    body = json.dumps({"query": PING}).encode().ljust(1000)
    with closing(connect(quick)) as sock:
        sock.sendall(
            b"POST /graphql HTTP/1.1\r\nHost: helpline\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + service_token().encode() + b"\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        sent = time.monotonic()
        trickle(sock, body)
        assert read_response(sock)[0] == 408
        assert DEADLINE_S * 0.9 <= time.monotonic() - sent < DEADLINE_S + 2


def test_a_large_body_cut_at_its_deadline_leaves_no_traceback(quick: Server) -> None:
    """A body too large for the fast front is read by the executor's view, which hears the
    client disconnect when the deadline closes the connection: nothing to answer, no error."""
    body = json.dumps({"query": PING}).encode().ljust(20_000)
    before = quick.log.read_text()
    with closing(connect(quick)) as sock:
        sock.sendall(
            b"POST /graphql HTTP/1.1\r\nHost: helpline\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body[:10_000]
        )
        assert read_response(sock)[0] == 408
    time.sleep(0.2)  # the app hears of the close after the 408 is written
    written = quick.log.read_text()[len(before) :]
    assert "Traceback" not in written and "ClientDisconnect" not in written, written[-2000:]


def test_a_body_stalled_after_an_early_answer_is_closed_without_another(quick: Server) -> None:
    with closing(connect(quick)) as sock:
        sock.sendall(
            b"POST /graphql HTTP/1.1\r\nHost: helpline\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        assert read_response(sock)[0] == 415  # answered before its body arrived
        assert sock.recv(1024) == b""  # at the body's deadline: closed, and nothing more said


@pytest.mark.parametrize(
    ("stalled", "customer"),
    [
        (LIVE, CUSTOMER),
        (STALLED_BODY, LEGACY_CUSTOMER),
    ],
    ids=["head", "body"],
)
def test_a_request_stalled_behind_one_being_answered_gets_no_answer_out_of_turn(
    quick: Server, quick_db: Settings, stalled: bytes, customer: DemoUser
) -> None:
    with write_lock(quick_db), closing(connect(quick)) as sock:
        sock.sendall(first_contact(customer))
        time.sleep(0.3)  # it waits for the lock
        sock.sendall(stalled)
        assert sock.recv(1024) == b""  # closed at the deadline: no 408 before the answer due


def test_a_websocket_upgrade_with_oversized_headers_gets_431(quick: Server) -> None:
    upgrade = (
        b"GET /graphql HTTP/1.1\r\nHost: helpline\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Protocol: graphql-transport-ws\r\n"
    )
    assert status_of(quick, upgrade + b"\r\n") == 101
    assert status_of(quick, upgrade + b"X-Padding: " + b"a" * 40_000 + b"\r\n\r\n") == 431


def test_a_websocket_is_never_closed_to_make_room(crowded: Server) -> None:
    async def scenario() -> dict[str, object]:
        subscription = await Subscription.open(crowded.url, service_token())
        idle = [connect(crowded) for _ in range(MAX_CONNECTIONS + 10)]
        try:
            await asyncio.sleep(0.5)
            await subscription.socket.send(json.dumps({"type": "ping"}))
            return await subscription.receive()
        finally:
            for sock in idle:
                sock.close()
            await subscription.close()

    assert asyncio.run(scenario()) == {"type": "pong"}


def test_a_request_being_answered_is_never_closed_to_make_room(
    crowded: Server, crowded_db: Settings
) -> None:
    """The oldest connection waits on the write lock while idle ones crowd in: they are
    closed, it is answered."""
    with closing(connect(crowded)) as busy:
        with write_lock(crowded_db):
            busy.sendall(first_contact(LEGACY_CUSTOMER))
            time.sleep(0.3)  # it waits for the lock
            idle = [connect(crowded) for _ in range(MAX_CONNECTIONS + 10)]
            time.sleep(0.2)
        status, answer = read_response(busy)
    for sock in idle:
        sock.close()
    assert status == 200
    assert json.loads(answer)["data"]["adminConversation"]["created"] is True


def test_idle_connections_beyond_max_connections_do_not_lock_out_requests(crowded: Server) -> None:
    closed = still_serving_past_max_connections(crowded, workers=1)
    assert all(closed[:30]), "the connections that waited longest go first"


def test_each_worker_holds_max_connections_and_serves_past_them(
    postgres: Settings, tmp_path: Path
) -> None:
    with running_server(
        postgres, tmp_path / "server.log", workers=2, MAX_CONNECTIONS=str(MAX_CONNECTIONS)
    ) as server:
        still_serving_past_max_connections(server, workers=2)


def still_serving_past_max_connections(server: Server, *, workers: int) -> list[bool]:
    """Open 30 idle connections more than the workers may hold, then probe and query: all
    are answered, and the workers closed enough idle ones. Which idle ones were closed."""
    idle = [connect(server) for _ in range(workers * MAX_CONNECTIONS + 30)]
    try:
        assert httpx.get(f"{server.base}/live", timeout=GUARD_S).status_code == 200
        assert httpx.get(f"{server.base}/ready", timeout=GUARD_S).status_code == 200
        answer = httpx.post(
            server.url,
            json={"query": PING},
            headers={"authorization": f"Bearer {service_token()}"},
            timeout=GUARD_S,
        )
        assert answer.status_code == 200, answer.text
        assert "errors" not in answer.json()
        time.sleep(0.2)
        closed = [closed_by_server(sock) for sock in idle]
    finally:
        for sock in idle:
            sock.close()
    assert closed.count(False) <= workers * MAX_CONNECTIONS
    return closed


def test_serve_stops_in_words_when_open_files_cannot_hold_max_connections(
    tmp_path: Path,
) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard limit on open files here")
    refused = subprocess.run(
        [str(Path(sys.executable).parent / "helpline"), "serve", "--port", str(free_port())],
        env={
            **os.environ,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'helpline.db'}",
            "MAX_CONNECTIONS": str(hard),
        },
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert refused.returncode == 2
    assert refused.stderr.startswith("helpline: MAX_CONNECTIONS: ")
    assert f"hard limit of {hard}" in refused.stderr
