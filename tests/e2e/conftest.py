"""HTTP clients for the app: in-process (Starlette's TestClient) and a real uvicorn server."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import httpx2 as httpx
import pytest
from playwright.sync_api import Browser, sync_playwright
from starlette.testclient import TestClient

from gql.auth.tokens import AUTHENTICATED, SERVICE_ROLE
from gql.http.app import create_app
from gql.http.playground import assets_available
from gql.http.settings import Settings
from gql.ops.tokens import mint
from repo.database import bound_settings, database
from repo.demo import seed_demo_data
from tests.conftest import TEST_JWT_SECRET


def service_token() -> str:
    return mint(TEST_JWT_SECRET, role=SERVICE_ROLE)


def user_token(user_id: UUID, **claims: Any) -> str:
    return mint(TEST_JWT_SECRET, role=AUTHENTICATED, sub=user_id, **claims)


class GraphQLClient:
    """Posts GraphQL operations the way a frontend does, as one caller (a bearer token)."""

    def __init__(self, http: TestClient, token: str | None) -> None:
        self.http = http
        self.token = token

    def as_(self, token: str | None) -> GraphQLClient:
        """The same app, called with another token (None: anonymous)."""
        return GraphQLClient(self.http, token)

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    def request(self, query: str, **variables: Any) -> Any:
        return self.http.post(
            "/graphql", json={"query": query, "variables": variables}, headers=self.headers
        )

    def post(self, query: str, **variables: Any) -> dict[str, Any]:
        response = self.request(query, **variables)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        body: dict[str, Any] = response.json()
        return body

    def data(self, query: str, **variables: Any) -> dict[str, Any]:
        body = self.post(query, **variables)
        assert "errors" not in body, body
        result: dict[str, Any] = body["data"]
        return result

    def error(self, query: str, **variables: Any) -> dict[str, Any]:
        """The single error a failing operation returns."""
        body = self.post(query, **variables)
        (error,) = body["errors"]
        assert isinstance(error["extensions"]["code"], str)
        return dict(error)


@pytest.fixture
def client(db: Settings) -> Iterator[GraphQLClient]:
    """The app on the test database, called by an operator (service_role token)."""
    with TestClient(create_app(db), raise_server_exceptions=False) as http:
        yield GraphQLClient(http, service_token())


ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")
STARTUP_TIMEOUT_S = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


COMPARED_HEADERS = (
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-expose-headers",
    "vary",
    "retry-after",
    "www-authenticate",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
)


@dataclass(frozen=True)
class Server:
    url: str  # the GraphQL endpoint
    log: Path
    pid: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return self.url.removesuffix("/graphql")


@contextmanager
def running_server(
    db: Settings, log_path: Path, *, workers: int = 1, port: int | None = None, **variables: str
) -> Iterator[Server]:
    """`helpline demo seed`, then `helpline serve` as the Procfile runs it.

    ``variables``: more environment for the server, e.g. PRESENCE_HEARTBEAT_SECONDS="0.5".
    """
    env = {
        **os.environ,
        "DATABASE_URL": db.database.database_url,
        "WELCOME_MESSAGE": "Hello from e2e",
        "JWT_SECRET": TEST_JWT_SECRET,
        **variables,
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    bin_dir = Path(sys.executable).parent
    if _bound_url() == db.database.database_url:  # migrated by the fixture: seed in process
        with database.connection_context():
            seed_demo_data()  # what `helpline demo seed` adds (tests/integration/test_cli.py)
    else:
        subprocess.run(
            [str(bin_dir / "helpline"), "demo", "seed"],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=60,
        )
    port = port or free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(bin_dir / "helpline"),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/live", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the server did not start: {log_path.read_text()}")
                time.sleep(0.1)
        yield Server(f"http://127.0.0.1:{port}/graphql", log_path, process.pid, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:  # never leave it holding the port or the database
            process.kill()
            process.wait(timeout=15)
            raise


def _bound_url() -> str | None:
    """The database the tests' repository is bound to, if any."""
    try:
        return bound_settings().database_url
    except RuntimeError:
        return None


def wait_for(check: Callable[[], T], what: str, *, timeout_s: float = 10.0) -> T:
    """``check()`` once it is truthy, polled; the test fails naming ``what`` after
    ``timeout_s`` (never a speed assertion: a condition, not a fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"still waiting for {what} after {timeout_s:g} s")
        time.sleep(0.02)
    return found


@pytest.fixture
def server(db: Settings, tmp_path: Path) -> Iterator[Server]:
    with running_server(db, tmp_path / "server.log") as running:
        yield running


@pytest.fixture
def postgres_server(postgres: Settings, tmp_path: Path) -> Iterator[Server]:
    with running_server(postgres, tmp_path / "server.log") as running:
        yield running


@dataclass
class Pair:
    fast: TestClient
    generic: TestClient

    def both(
        self,
        query: str | None,
        token: str | None,
        variables: dict[str, Any] | None = None,
        *,
        headers: dict[str, str] | None = None,
        **body: Any,
    ) -> tuple[Any, Any]:
        headers = {**(headers or {}), **({"authorization": f"Bearer {token}"} if token else {})}
        payload = {"query": query, "variables": variables, **body}
        if query is None:
            del payload["query"]
        return (
            self.fast.post("/graphql", json=payload, headers=headers),
            self.generic.post("/graphql", json=payload, headers=headers),
        )


@pytest.fixture
def pair(db: Settings) -> Iterator[Pair]:
    # One lifespan (one process may serve a SQLite file); HTTP needs no more than the pool.
    generic = TestClient(create_app(db, fast_path=False), raise_server_exceptions=False)
    with TestClient(create_app(db), raise_server_exceptions=False) as fast:
        yield Pair(fast, generic)


@pytest.fixture
def cors_pair(db: Settings) -> Iterator[Pair]:
    """A pair whose apps allow one browser origin, https://app.example (CORS_ORIGINS)."""
    settings = db.replaced(cors_origins=("https://app.example",))
    generic = TestClient(create_app(settings, fast_path=False), raise_server_exceptions=False)
    with TestClient(create_app(settings), raise_server_exceptions=False) as fast:
        yield Pair(fast, generic)


def answered(client: TestClient) -> int:
    return int(client.app.state.fast_paths.answered)  # type: ignore[attr-defined]


def same(fast: Any, generic: Any) -> dict[str, Any]:
    """Assert both responses are the same (request ids aside); return the body."""
    assert fast.status_code == generic.status_code, (fast.text, generic.text)
    for header in ("content-type", *COMPARED_HEADERS):
        assert fast.headers.get(header) == generic.headers.get(header), header
    assert "x-request-id" in fast.headers
    body = _without_request_ids(fast.json())
    assert body == _without_request_ids(generic.json())
    return body


def _without_request_ids(body: Any) -> Any:
    text = re.sub(r'"request_?[iI]d": ?"[^"]*"', '"request_id": "-"', json.dumps(body))
    return json.loads(text)


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (its own browser downloads fail here)."""
    missing = [
        what
        for what, ok in [
            ("Debian's chromium (make browser)", os.path.exists(CHROMIUM)),
            ("playground assets (make install)", assets_available()),
        ]
        if not ok
    ]
    if missing and os.environ.get("CI", "").lower() not in ("true", "1"):
        pytest.skip(f"the browser test needs {' and '.join(missing)}")
    assert not missing, f"CI needs {' and '.join(missing)}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()
