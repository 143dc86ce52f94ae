"""The app as deployed: uvicorn serving the factory, on a loopback port, against each backend."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psycopg2
import pytest

from repo.config import Settings
from repo.db import postgres_connect_kwargs, sqlite_path
from repo.demo import LEGACY_CUSTOMER
from tests.conftest import TEST_JWT_SECRET
from tests.e2e.conftest import service_token
from tests.factories import make_admin, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(db: Settings, tmp_path: Path) -> Iterator[str]:
    """`python -m repo seed-demo`, then uvicorn as the Procfile runs it; yields the GraphQL URL."""
    env = {
        **os.environ,
        "DATABASE_URL": db.database_url,
        "WELCOME_MESSAGE": "Hello from e2e",
        "JWT_SECRET": TEST_JWT_SECRET,
    }
    bin_dir = Path(sys.executable).parent
    subprocess.run(
        [sys.executable, "-m", "repo", "seed-demo"],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=60,
    )
    port = free_port()
    log_path = tmp_path / "uvicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(bin_dir / "uvicorn"),
                "--factory",
                "gql.app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                httpx.get(url, params={"query": "{ __typename }"}, timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"uvicorn did not start: {log_path.read_text()}")
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def post(url: str, query: str, **variables: Any) -> dict[str, Any]:
    """Post as an operator (service_role token)."""
    response = httpx.post(
        url,
        json={"query": query, "variables": variables},
        headers={"authorization": f"Bearer {service_token()}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


OPEN = """mutation ($c: UUID!) { adminConversation(customerId: $c) {
  created profileCreated conversation { id admin { name }
  messages { edges { node { content } } } } } }"""


def test_demo_legacy_customer_gets_a_conversation_from_the_served_app(server: str) -> None:
    body = post(server, OPEN, c=str(LEGACY_CUSTOMER.id))

    payload = body["data"]["adminConversation"]
    assert (payload["created"], payload["profileCreated"]) == (True, True)
    assert payload["conversation"]["admin"]["name"] == "Ada Admin"
    assert payload["conversation"]["messages"]["edges"][0]["node"]["content"] == "Hello from e2e"
    playground = httpx.get(server, headers={"accept": "text/html"}, timeout=10)
    assert playground.status_code == 200 and "graphiql" in playground.text.lower()


def test_a_request_stuck_on_a_lock_does_not_stall_other_requests(server: str, db: Settings) -> None:
    make_admin()
    customer_id = make_user()
    release = threading.Event()

    def hold_the_lock() -> None:
        if db.is_sqlite:
            conn: Any = sqlite3.connect(sqlite_path(db.database_url), isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
        else:
            conn = psycopg2.connect(**postgres_connect_kwargs(db.database_url))
            conn.cursor().execute(
                "SELECT 1 FROM profiles WHERE id = %s FOR UPDATE", (str(customer_id),)
            )
        locked.set()
        release.wait(timeout=20)
        conn.rollback()
        conn.close()

    locked = threading.Event()
    with ThreadPoolExecutor(max_workers=2) as pool:
        holder = pool.submit(hold_the_lock)
        assert locked.wait(timeout=10)
        stuck = pool.submit(post, server, OPEN, c=str(customer_id))
        time.sleep(0.3)  # let the stuck request reach the lock
        try:
            other = post(server, "{ integrity { orphanedConversationCount } }")
            assert other == {"data": {"integrity": {"orphanedConversationCount": 0}}}
            assert not stuck.done()
        finally:
            release.set()
        holder.result(timeout=20)
        assert stuck.result(timeout=20)["data"]["adminConversation"]["created"] is True
