"""Real databases for every test: a temporary SQLite file and a fresh PostgreSQL database.

TEST_DATABASE_URL names the PostgreSQL server (any database on it that the user can connect
to); each run creates its own database there and drops it at the end. With CI=true an
unreachable server fails the run at once; elsewhere its half of the suite is skipped, loudly.
The same goes for Debian's PgBouncer, which the pooling tests start in front of that server.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest
from pytest_postgresql.janitor import DatabaseJanitor

from gql.http.settings import Settings
from repo.config import DatabaseSettings
from repo.database import close_database, database, is_sqlite, open_database
from repo.migrate import migrate
from tests import clusters
from tests.pgbouncer import PgBouncer, pgbouncer_missing, running_pgbouncer

POSTGRES_SERVER_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TEST_WELCOME_MESSAGE = "Welcome to Helpline support!"
TEST_JWT_SECRET = "test-secret-" + "x" * 40
TABLES = (
    "admin_conversation_counts",
    "conversation_assignment_totals",
    "presence",
    "send_allowances",
    "conversation_reads",
    "messages",
    "conversations",
    "profiles",
    "users",
)
UNREACHABLE = pytest.StashKey[str | None]()


def postgres_unreachable() -> str | None:
    """Why the test PostgreSQL server cannot be used, or None when it can."""
    try:
        psycopg2.connect(POSTGRES_SERVER_URL, connect_timeout=5).close()
    except psycopg2.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0]
        return f"PostgreSQL unreachable at {POSTGRES_SERVER_URL} ({reason})"
    return None


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


def pytest_sessionstart(session: pytest.Session) -> None:
    reason = postgres_unreachable()
    session.config.stash[UNREACHABLE] = reason
    if reason and in_ci():
        pytest.exit(f"{reason}: CI requires it. Start it or set TEST_DATABASE_URL.", returncode=3)


def pytest_report_header(config: pytest.Config) -> list[str]:
    reason = config.stash.get(UNREACHABLE, None)
    lines = [
        f"database backends: sqlite{'' if reason else ', postgresql'}"
        + (f" -- {reason}; its tests are skipped" if reason else "")
    ]
    if missing := clusters.unavailable():
        lines.append(f"replication tests: {missing}; they are skipped")
    return lines


@contextmanager
def new_postgres_database(prefix: str) -> Iterator[str]:
    """A database of its own on the test server, dropped on exit; yields its URL."""
    server = urlsplit(POSTGRES_SERVER_URL)
    dbname = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    janitor = DatabaseJanitor(
        user=server.username or "postgres",
        password=server.password,
        host=server.hostname or "127.0.0.1",
        port=server.port or 5432,
        dbname=dbname,
        maintenance_dbname=server.path.lstrip("/") or "postgres",
    )
    with janitor:
        yield urlunsplit(server._replace(path=f"/{dbname}"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this run's own, dropped at the end."""
    with new_postgres_database("helpline_test") as url:
        yield url


@pytest.fixture(scope="session")
def pgbouncer(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode in front of the test server, for this run."""
    if unreachable := request.config.stash.get(UNREACHABLE, None):
        pytest.skip(unreachable)
    if missing := pgbouncer_missing():
        if in_ci():
            pytest.fail(f"{missing}: CI requires it")
        pytest.skip(missing)
    with running_pgbouncer(POSTGRES_SERVER_URL, tmp_path_factory.mktemp("pgbouncer")) as bouncer:
        yield bouncer


@pytest.fixture(scope="module")
def standby_pair(request: pytest.FixtureRequest) -> Iterator[clusters.Pair]:
    """Private primary and streaming standby clusters (asynchronous) with a migrated
    ``helpline`` database, for this module; dropped at the end (tests/clusters.py)."""
    if missing := clusters.unavailable():
        if in_ci():
            pytest.fail(f"{missing}: CI requires it")
        pytest.skip(missing)
    with clusters.replicated_pair(synchronous=False, databases=("helpline",)) as pair:
        migrate(DatabaseSettings(database_url=pair.primary.url("helpline")))
        yield pair


@pytest.fixture(scope="session")
def migrated_postgres_url(request: pytest.FixtureRequest) -> str:
    """This run's PostgreSQL database, migrated once."""
    if unreachable := request.config.stash.get(UNREACHABLE, None):
        pytest.skip(unreachable)  # only outside CI: pytest_sessionstart fails the run in CI
    url: str = request.getfixturevalue("postgres_url")
    migrate(DatabaseSettings(database_url=url))
    return url


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated database URL, once per backend."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("migrated_postgres_url"))
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'helpline.db'}"
    migrate(DatabaseSettings(database_url=url))
    return url


def settings_for(database_url: str) -> Settings:
    return Settings.of(
        database_url=database_url,
        welcome_message=TEST_WELCOME_MESSAGE,
        jwt_secret=TEST_JWT_SECRET,
    )


@pytest.fixture
def settings(database_url: str) -> Settings:
    return settings_for(database_url)


@contextmanager
def bound(settings: Settings) -> Iterator[Settings]:
    """The repository bound to ``settings``' migrated database, emptied afterwards."""
    open_database(settings.database)
    try:
        yield settings
    finally:
        open_database(
            settings.database
        )  # an app under test may have bound the repository elsewhere
        empty_tables()
        close_database()


@pytest.fixture
def db(settings: Settings) -> Iterator[Settings]:
    """The repository bound to a migrated, empty database; emptied again afterwards."""
    with bound(settings) as bound_settings:
        yield bound_settings


@pytest.fixture
def postgres(migrated_postgres_url: str) -> Iterator[Settings]:
    """As ``db``, on PostgreSQL alone: for what only a database server has (terminated
    backends, a network to cut, lock and statement timeouts, deadlocks, query plans)."""
    with bound(settings_for(migrated_postgres_url)) as bound_settings:
        yield bound_settings


def empty_tables() -> None:
    with database.connection_context():
        if is_sqlite():
            for table in TABLES:
                database.execute_sql(f"DELETE FROM {table}")
        else:
            database.execute_sql(f"TRUNCATE {', '.join(TABLES)}")


@dataclass
class QueryLog(logging.Handler):
    """Collects the SQL peewee runs, from every thread."""

    statements: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        logging.Handler.__init__(self)

    def emit(self, record: logging.LogRecord) -> None:
        if record.name != "peewee":
            return
        sql = record.msg[0] if isinstance(record.msg, tuple) else record.getMessage()
        self.statements.append(str(sql))

    def __hash__(self) -> int:
        return id(self)


@pytest.fixture
def queries() -> Iterator[QueryLog]:
    """The statements run while the test body runs."""
    handler = QueryLog()
    logger = logging.getLogger("peewee")
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
