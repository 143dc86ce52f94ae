"""The LISTEN connection that hears of stored messages from every process (PostgreSQL).

One per process, never one per subscriber. This module owns the connection and its SQL; the
GraphQL layer watches its socket from the event loop and fans the messages out
(gql/realtime/).
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg2
import psycopg2.extensions

from repo import events
from repo.errors import DatabaseUnavailable
from repo.pool import postgres_connect_kwargs

Notification = events.Event


class ListenConnection:
    """A connection that LISTENs on the messages channel: open it (blocking: in a worker
    thread), watch ``fileno`` for reads, then ``drain`` what it heard."""

    def __init__(self, database_url: str) -> None:
        self.connect_kwargs = postgres_connect_kwargs(database_url) | {
            "application_name": "helpline-listener",
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        }
        self.conn: Any = None

    def open(self) -> int:
        """Connect and LISTEN; the socket's descriptor. DatabaseUnavailable when it cannot."""
        try:
            conn = psycopg2.connect(**self.connect_kwargs)
        except psycopg2.Error as exc:
            raise DatabaseUnavailable(f"listener: {type(exc).__name__}") from exc
        try:
            conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
            with conn.cursor() as cursor:
                cursor.execute(f"LISTEN {events.CHANNEL}")
        except psycopg2.Error as exc:
            conn.close()
            raise DatabaseUnavailable(f"listener: {type(exc).__name__}") from exc
        self.conn = conn
        return int(conn.fileno())

    @property
    def backend_pid(self) -> int | None:
        return None if self.conn is None else int(self.conn.get_backend_pid())

    def drain(self) -> list[Notification] | None:
        """The messages heard since the last call; None when the connection is lost."""
        try:
            self.conn.poll()
            if self.conn.closed:  # a terminated backend can leave the socket readable
                return None
        except (psycopg2.Error, OSError):
            return None
        heard = []
        while self.conn.notifies:
            if event := events.decode(self.conn.notifies.pop(0).payload):
                heard.append(event)
        return heard

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None
