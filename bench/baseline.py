"""The bare baseline for `bench.api`: Starlette + psycopg2, the same SQL reads, no GraphQL.

It answers the benchmark's POST /graphql bodies by running the single SQL statement behind
each of Helpline's read paths (the hot path's joined conversation read, the message page's
read) with psycopg2 in Starlette's thread pool, and encodes a response of the same shape. No
token is verified and no document is parsed: this is the floor a Python web stack on this
database reaches, which is what Helpline's throughput is compared with.

    DATABASE_URL=postgresql://... uvicorn bench.baseline:app
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg2.pool import ThreadedConnectionPool
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# The statements Helpline runs for these reads, as peewee renders them (see repo/).
CONVERSATION = """
SELECT c.id, c.created_at, c.updated_at, c.last_message_at,
       customer.id, customer.name, customer.avatar_url, customer.is_admin, customer.is_online,
       admin.id, admin.name, admin.avatar_url, admin.is_admin, admin.is_online
FROM conversations AS c
INNER JOIN profiles AS customer ON (c.customer_id = customer.id)
INNER JOIN profiles AS admin ON (c.admin_id = admin.id)
WHERE (c.customer_id = %s) LIMIT 1
"""
MESSAGES = """
SELECT m.id, m.conversation_id, m.content, m.created_at, m.client_message_id,
       s.id, s.name, s.avatar_url, s.is_admin, s.is_online
FROM messages AS m INNER JOIN profiles AS s ON (m.sender_id = s.id)
WHERE (m.conversation_id = %s) ORDER BY m.created_at DESC, m.id DESC LIMIT 21
"""
# Helpline's DB_POOL_SIZE unless told; all kept open (psycopg2 closes returns above minconn)
POOL_SIZE = int(os.environ.get("BASELINE_POOL_SIZE", "40"))


class Pool:
    pool: ThreadedConnectionPool
    free = threading.BoundedSemaphore(POOL_SIZE)


def _run(sql: str, value: str) -> list[tuple[Any, ...]]:
    with Pool.free:  # wait for a connection, as Helpline's pool does (psycopg2's would raise)
        return _run_on_pooled(sql, value)


def _run_on_pooled(sql: str, value: str) -> list[tuple[Any, ...]]:
    conn = Pool.pool.getconn()
    try:
        conn.autocommit = True  # one statement, one round trip: no BEGIN, no ROLLBACK
        with conn.cursor() as cursor:
            cursor.execute(sql, (value,))
            return cursor.fetchall()
    finally:
        Pool.pool.putconn(conn)


async def graphql(request: Request) -> Response:
    variables = json.loads(await request.body()).get("variables") or {}
    if "c" in variables:  # the customer's conversation ($c), else a page of messages ($id)
        rows = await run_in_threadpool(_run, CONVERSATION, variables["c"])
        row = rows[0] if rows else None
        conversation = (
            {
                "id": str(row[0]),
                "lastMessageAt": row[3].isoformat() if row[3] else None,
                "admin": {"name": row[10]},
            }
            if row
            else None
        )
        data: dict[str, Any] = {"adminConversation": {"conversation": conversation}}
    else:
        rows = await run_in_threadpool(_run, MESSAGES, variables["id"])
        edges = [
            {
                "node": {
                    "id": str(r[0]),
                    "content": r[2],
                    "createdAt": r[3].isoformat(),
                    "sender": {"id": str(r[5]), "name": r[6], "avatarUrl": r[7]},
                }
            }
            for r in rows[:20]
        ]
        data = {"conversation": {"messages": {"edges": edges}}}
    return Response(json.dumps({"data": data}), media_type="application/json")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    Pool.pool = ThreadedConnectionPool(
        POOL_SIZE, POOL_SIZE, os.environ["DATABASE_URL"], options="-c timezone=UTC"
    )
    try:
        yield
    finally:
        Pool.pool.closeall()


app = Starlette(routes=[Route("/graphql", graphql, methods=["POST"])], lifespan=lifespan)
