"""Private PostgreSQL clusters for replication tests: a primary and a physical standby.

Made with Debian's tools (``pg_createcluster`` on free private ports, data directories of their
own under /var/lib/postgresql/15/, the standby from ``pg_basebackup -R``), started and stopped
with ``pg_ctlcluster``, dropped with ``pg_dropcluster`` at the end whatever happens. Every
cluster's name starts with ``helpline-test-`` and carries this process's id: the shared
cluster (15/main, port 5432) is never touched. Needs root (the clusters' files belong to
``postgres``); ``unavailable()`` says why not, for the caller to skip or fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2

VERSION = "15"
SHARED_PORT = 5432
COMMAND_TIMEOUT_S = 60
READY_TIMEOUT_S = 30
PREFIX = "helpline-test-"
HBA = """\
local all all peer
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
"""
CONF = """
listen_addresses = '127.0.0.1'
max_connections = 60
shared_buffers = 32MB
wal_level = replica
max_wal_senders = 5
hot_standby = on
hot_standby_feedback = on
wal_receiver_status_interval = 1s
"""


def unavailable() -> str | None:
    """Why private clusters cannot be made here, or None."""
    if os.geteuid() != 0:
        return "private PostgreSQL clusters need root (pg_createcluster as the postgres user)"
    missing = [
        t for t in ("pg_createcluster", "pg_ctlcluster", "pg_dropcluster") if not shutil.which(t)
    ]
    if missing:
        return f"Debian's PostgreSQL tools are missing: {', '.join(missing)}"
    if not Path(f"/usr/lib/postgresql/{VERSION}/bin/pg_basebackup").exists():
        return f"pg_basebackup of PostgreSQL {VERSION} is missing"
    return None


def run(*command: str) -> str:
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def private_port() -> int:
    """A free port on loopback that is not the shared cluster's."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port != SHARED_PORT:
            return port


@dataclass
class Cluster:
    name: str
    port: int

    @property
    def conf_dir(self) -> Path:
        return Path("/etc/postgresql") / VERSION / self.name

    @property
    def data_dir(self) -> Path:
        return Path("/var/lib/postgresql") / VERSION / self.name

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def ctl(self, *args: str) -> None:
        run("pg_ctlcluster", "--skip-systemctl-redirect", VERSION, self.name, *args)

    def create(self, conf: str) -> None:
        run("pg_createcluster", VERSION, self.name, "-p", str(self.port), "--start-conf", "manual")
        (self.conf_dir / "pg_hba.conf").write_text(HBA)
        with (self.conf_dir / "postgresql.conf").open("a") as out:  # the last setting wins
            out.write(CONF + conf)

    def start(self) -> None:
        self.ctl("start")
        self.wait_ready()

    def kill(self) -> None:
        """The server stops at once, as in a crash: nothing is flushed or handed over."""
        self.ctl("stop", "-m", "immediate")

    def promote(self) -> None:
        self.ctl("promote")

    def wait_ready(self, *, primary: bool | None = None) -> None:
        """Until it accepts connections (and, with ``primary``, is or is not in recovery)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                with contextlib.closing(self.connect()) as conn, conn.cursor() as cursor:
                    cursor.execute("SELECT pg_is_in_recovery()")
                    (in_recovery,) = cursor.fetchone()
                    if primary is None or in_recovery is not primary:
                        return
            except psycopg2.OperationalError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster {self.name} was not ready in {READY_TIMEOUT_S} s")
            time.sleep(0.05)

    def connect(self, database: str = "postgres") -> Any:
        conn = psycopg2.connect(self.url(database), connect_timeout=3)
        conn.autocommit = True
        return conn

    def execute(self, sql: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        with contextlib.closing(self.connect(database)) as conn, conn.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall() if cursor.description else []

    def drop(self) -> None:
        with contextlib.suppress(RuntimeError):
            run("pg_dropcluster", "--stop", VERSION, self.name)
        for leftover in (self.conf_dir, self.data_dir):
            if leftover.exists():  # what a creation that failed half-way left
                shutil.rmtree(leftover, ignore_errors=True)


@dataclass
class Pair:
    primary: Cluster
    standby: Cluster

    def url(self, database: str, **params: str) -> str:
        """The libpq multi-host URL of both, the primary first, for ``database``."""
        hosts = f"127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://postgres@{hosts}/{database}" + (f"?{query}" if query else "")

    def wait_streaming(self, *, synchronous: bool) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        wanted = "sync" if synchronous else "async"
        while True:
            rows = self.primary.execute("SELECT state, sync_state FROM pg_stat_replication")
            if ("streaming", wanted) in rows:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the standby is not streaming ({wanted}): {rows}")
            time.sleep(0.05)


@contextlib.contextmanager
def replicated_pair(*, synchronous: bool, databases: tuple[str, ...] = ()) -> Iterator[Pair]:
    """A primary with one streaming standby (synchronous or not), ``databases`` created on the
    primary before the standby is cloned; both dropped at the end."""
    tag = f"{PREFIX}{os.getpid()}-{time.monotonic_ns() % 10**6}"
    primary = Cluster(f"{tag}-primary", private_port())
    standby = Cluster(f"{tag}-standby", private_port())
    try:
        primary.create("")
        primary.start()
        for database in databases:
            primary.execute(f"CREATE DATABASE {database}")
        standby.create("")
        for entry in standby.data_dir.iterdir():  # pg_basebackup fills the empty directory
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        run(
            "runuser", "-u", "postgres", "--",
            f"/usr/lib/postgresql/{VERSION}/bin/pg_basebackup",
            "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
            "-D", str(standby.data_dir), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        standby.start()
        pair = Pair(primary, standby)
        if synchronous:  # only now: until a standby streams, every commit would wait for one
            primary.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            primary.execute("SELECT pg_reload_conf()")
        pair.wait_streaming(synchronous=synchronous)
        yield pair
    finally:
        for cluster in (standby, primary):
            cluster.drop()
