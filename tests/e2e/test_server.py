"""The app as deployed: uvicorn serving the factory, on a loopback port, against each backend."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psycopg2
import pytest

from gql.http.settings import Settings
from repo.database import sqlite_path
from repo.demo import LEGACY_CUSTOMER
from repo.pool import postgres_connect_kwargs
from tests.conftest import TEST_JWT_SECRET
from tests.e2e.conftest import ROOT, Server, free_port, service_token, wait_for
from tests.factories import make_admin, make_user, waiting_on_a_lock

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


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


def test_demo_legacy_customer_gets_a_conversation_from_the_served_app(server: Server) -> None:
    body = post(server.url, OPEN, c=str(LEGACY_CUSTOMER.id))

    payload = body["data"]["adminConversation"]
    assert (payload["created"], payload["profileCreated"]) == (True, True)
    assert payload["conversation"]["admin"]["name"] == "Ada Admin"
    assert payload["conversation"]["messages"]["edges"][0]["node"]["content"] == "Hello from e2e"
    playground = httpx.get(server.url, headers={"accept": "text/html"}, timeout=10)
    assert playground.status_code == 200 and "graphiql" in playground.text.lower()


def test_a_request_stuck_on_a_lock_does_not_stall_other_requests(server: str, db: Settings) -> None:
    make_admin()
    customer_id = make_user()
    release = threading.Event()

    def hold_the_lock() -> None:
        if db.database.is_sqlite:
            conn: Any = sqlite3.connect(sqlite_path(db.database.database_url), isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
        else:
            conn = psycopg2.connect(**postgres_connect_kwargs(db.database.database_url))
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
        stuck = pool.submit(post, server.url, OPEN, c=str(customer_id))
        if db.database.is_sqlite:
            time.sleep(0.3)  # SQLite shows no lock wait to poll for
        else:
            wait_for(waiting_on_a_lock, "the stuck request at the lock")
        try:
            other = post(server.url, "{ integrity { orphanedConversationCount } }")
            assert other == {"data": {"integrity": {"orphanedConversationCount": 0}}}
            assert not stuck.done()
        finally:
            release.set()
        holder.result(timeout=20)
        assert stuck.result(timeout=20)["data"]["adminConversation"]["created"] is True


def test_a_second_process_serves_postgresql_but_is_refused_a_sqlite_file(
    server: Server, db: Settings, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "second.log"
    with log.open("wb") as out:
        second = subprocess.Popen(  # plain uvicorn, which knows nothing of WEB_CONCURRENCY
            [
                str(Path(sys.executable).parent / "uvicorn"),
                "--factory",
                "gql.http.app:create_app",
                "--port",
                str(port),
            ],
            env={
                **os.environ,
                "DATABASE_URL": db.database.database_url,
                "JWT_SECRET": TEST_JWT_SECRET,
            },
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        serving = False
        while second.poll() is None and not serving:
            assert time.monotonic() < deadline, "the second process neither served nor stopped"
            try:
                serving = httpx.get(f"http://127.0.0.1:{port}/live", timeout=1).status_code == 200
            except httpx.TransportError:
                time.sleep(0.1)
    finally:
        second.terminate()
        second.wait(timeout=20)
    if db.database.is_sqlite:  # live messages fan out in process: one process per file
        assert not serving and second.returncode != 0
        assert "another process already serves" in log.read_text()
    else:  # stateless over PostgreSQL: any number of processes side by side
        assert serving
    assert httpx.get(f"{server.base}/live", timeout=5).status_code == 200  # the first serves on


def test_a_serving_process_keeps_start_up_objects_out_of_the_collector_s_walks(
    tmp_path: Path,
) -> None:
    # a fresh process serves the app (its lifespan runs) and reports its collector: what
    # start-up built is frozen, and the young generation is collected 10,000 allocations
    # apart (long full collections set the delivery p99: gql/http/heap.py)
    probe = (
        "import gc, json, sys; sys.path.insert(0, '.');"
        "from starlette.testclient import TestClient;"
        "from gql.http.app import create_app; from gql.http.settings import Settings;"
        f"settings = Settings.of(database_url='sqlite:///{tmp_path / 'heap.db'}');"
        "from repo.migrate import migrate; migrate(settings.database);"
        "before = gc.get_threshold()[0];"
        "client = TestClient(create_app(settings)); client.__enter__();"
        "print(json.dumps([before, gc.get_freeze_count() > 0, gc.get_threshold()[0]]));"
        "client.__exit__(None, None, None)"
    )
    env = {**os.environ, "JWT_SECRET": TEST_JWT_SECRET}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[700, true, 10000]"
