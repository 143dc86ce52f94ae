"""libpq's multi-host URLs, in both spellings, for every part that connects: the pool, the
listener, the migrations, /ready and the `helpline` commands. The first host is a port where
nothing listens (a primary that is gone); libpq goes on to the next."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from starlette.testclient import TestClient

from gql.http.app import create_app
from gql.http.settings import Settings
from gql.ops.cli import main
from repo.database import check_database, open_database
from repo.listener import ListenConnection
from repo.migrate import migrate
from tests.e2e.conftest import free_port
from tests.factories import first_contact, make_admin, make_user


def multi_host(url: str, spelling: str) -> str:
    parts = urlsplit(url)
    gone = f"127.0.0.1:{free_port()}"  # nothing listens there
    live = f"{parts.hostname}:{parts.port or 5432}"
    if spelling == "authority":
        netloc = f"{parts.username}@{gone},{live}"
        return f"postgresql://{netloc}{parts.path}?target_session_attrs=read-write"
    hosts, ports = zip(gone.split(":"), live.split(":"), strict=True)
    return (
        f"postgresql://{parts.username}@{parts.path}?host={','.join(hosts)}"
        f"&port={','.join(ports)}&target_session_attrs=read-write"
    )


@pytest.fixture(params=["authority", "query"])
def multi(request: pytest.FixtureRequest, postgres: Settings) -> Iterator[Settings]:
    url = multi_host(postgres.database.database_url, request.param)
    settings = postgres.replaced(database_url=url, listen_database_url=url, db_connect_timeout_s=2)
    yield settings
    open_database(postgres.database)


def test_the_pool_listener_migrations_and_ready_follow_a_multi_host_url(multi: Settings) -> None:
    assert migrate(multi.database) == []  # read by yoyo too: nothing left to apply
    open_database(multi.database)
    check_database()
    make_admin()
    assert first_contact(make_user()).created
    listener = ListenConnection(multi.database.listen_database_url or "")
    try:
        assert listener.open() > 0 and listener.backend_pid
    finally:
        listener.close()
    with TestClient(create_app(multi)) as http:
        assert http.get("/ready").status_code == 200


def test_the_commands_follow_a_multi_host_url(
    multi: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", multi.database.database_url)

    assert main(["integrity", "check"]) == 0
    assert main(["db", "migrate"]) == 0
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://helpline@127.0.0.1:5497,127.0.0.1:5498x/helpline",
        "postgresql://helpline@127.0.0.1:x/helpline",
        "postgresql://helpline@127.0.0.1:5497,,127.0.0.1:5498/helpline",
    ],
)
def test_a_url_libpq_cannot_use_exits_2_with_one_line(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)

    code = main(["integrity", "check"])

    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("helpline: DATABASE_URL:"), err
