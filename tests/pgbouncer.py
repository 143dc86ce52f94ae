"""Debian's PgBouncer in transaction mode, run by the tests in front of the test server.

One process per test run, on a free loopback port, with its ini in a directory of the run's
own; it is stopped by its PID at the end. The system service is never used.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
POOL_SIZE = 4  # server connections per database: far fewer than the app's pool, as in production
# Sessions through this PgBouncer are far from UTC (+05:45): Helpline must not depend on it.
SESSION_TIME_ZONE = "Asia/Kathmandu"
# A database alias whose pool is one server connection, for showing where NOTIFY goes.
ONE_CONNECTION = "one_server_connection"
STARTUP_TIMEOUT_S = 10


def pgbouncer_missing() -> str | None:
    """Why PgBouncer cannot be run here, or None when it can."""
    if not os.access(PGBOUNCER, os.X_OK):
        return "pgbouncer is not installed (make pgbouncer, or apt-get install pgbouncer)"
    return None


@dataclass(frozen=True)
class PgBouncer:
    port: int
    pid: int
    log: Path

    def url(self, database_url: str) -> str:
        """``database_url`` (a database on the test server), reached through this PgBouncer."""
        parts = urlsplit(database_url)
        return urlunsplit(parts._replace(netloc=f"helpline@127.0.0.1:{self.port}"))

    @property
    def one_connection_url(self) -> str:
        """A database alias whose pool is a single server connection."""
        return f"postgresql://helpline@127.0.0.1:{self.port}/{ONE_CONNECTION}"


def _ini(server_url: str, port: int) -> str:
    server = urlsplit(server_url)
    login = " ".join(
        [
            f"host={server.hostname or '127.0.0.1'}",
            f"port={server.port or 5432}",
            f"user={server.username or 'postgres'}",
            *([f"password={server.password}"] if server.password else []),
        ]
    )
    maintenance_db = server.path.lstrip("/") or "postgres"
    return f"""\
[databases]
{ONE_CONNECTION} = {login} dbname={maintenance_db} pool_size=1
* = {login} timezone={SESSION_TIME_ZONE}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = {POOL_SIZE}
max_client_conn = 500
"""


@contextmanager
def running_pgbouncer(server_url: str, directory: Path) -> Iterator[PgBouncer]:
    """Start PgBouncer on a free loopback port in front of ``server_url``'s server; stop it on
    exit."""
    assert (urlsplit(server_url).hostname or "127.0.0.1").startswith("127."), "loopback only"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    ini = directory / "pgbouncer.ini"
    ini.write_text(_ini(server_url, port))
    log_path = directory / "pgbouncer.log"
    # PgBouncer refuses to run as root; -u drops to nobody once it has read its ini.
    as_user = ["-u", "nobody"] if os.geteuid() == 0 else []
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [PGBOUNCER, *as_user, str(ini)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        bouncer = PgBouncer(port, process.pid, log_path)
        _until_serving(bouncer, process)
        yield bouncer
    finally:
        process.terminate()
        process.wait(timeout=10)


def _until_serving(bouncer: PgBouncer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        try:
            psycopg2.connect(bouncer.one_connection_url).close()
            return
        except psycopg2.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pgbouncer did not start: {bouncer.log.read_text()}") from None
            time.sleep(0.05)
