"""PostGraphile v4, the peer contender of `bench.api`: one Node process over the same database.

PostGraphile is what users would run instead of Helpline: it serves the schema it finds in
PostgreSQL, compiling each GraphQL document into one SQL statement. It is pinned in
`bench/postgraphile/package.json` (v4: v5 needs Node 22) and installed by `install()` from
the lock file; it is never part of `make test`.

    install()                                    # npm ci, once
    prepare(url)                                 # the cold path's wrapper function
    with serving(url, port, tmp) as server:      # one Node process; server.base is its URL
        ...                                      # POST HOT_READ / COLD / LIST to /graphql

The documents take the same variables as Helpline's: ``$c`` (a customer id) for `HOT_READ`
and `COLD`, ``$id`` (a conversation id) for `LIST`. `COLD` calls `bench_admin_conversation`,
a wrapper around Helpline's own get-or-create function (migration 0004); for an existing
customer it returns after one unlocked read, as Helpline does, so it also serves the hot
mutation workload (inside the BEGIN ... COMMIT PostGraphile wraps every mutation in). Unlike
Helpline it does not insert a missing users row from the token's email: the benchmark's cold
customers have one already.
The process holds up to ``pool_size`` PostgreSQL connections (PostGraphile's default, 10).

Tokens: by default PostGraphile verifies none (like the baseline) and runs each query as one
statement outside a transaction. ``verify_tokens=True`` makes it verify the customer's HS256
token (secret and audience as Helpline's) as a PostGraphile deployment with auth would: it
then copies the claims into ``jwt.claims.*`` settings, which costs every request a
transaction (BEGIN, set_config, the statement, COMMIT). The token's ``role`` claim is not
used as a PostgreSQL role (there is no such role here), so no grants are needed.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
import psycopg2
from psycopg2 import sql

from bench import function_path
from bench.common import ROOT, Server, stop, wait_until_serving
from gql.graphql.settings import DEFAULT_WELCOME_MESSAGE

PACKAGE = ROOT / "bench" / "postgraphile"
CLI = PACKAGE / "node_modules" / ".bin" / "postgraphile"

HOT_READ = (
    "query ($c: UUID!) { conversationByCustomerId(customerId: $c) "
    "{ id lastMessageAt profileByAdminId { name } } }"
)
COLD = (
    "mutation ($c: UUID!) { benchAdminConversation(input: { customer: $c }) "
    "{ conversation { id lastMessageAt profileByAdminId { name } } } }"
)
LIST = (
    "query ($id: UUID!) { conversationById(id: $id) { messagesByConversationId("
    "first: 20, orderBy: [CREATED_AT_DESC, ID_DESC]) { nodes { id content createdAt "
    "profileBySenderId { id name avatarUrl } } } } }"
)

# Helpline's former first-contact transaction as one PL/pgSQL call (the benchmark's own copy of
# migration 0004's function: bench/function_path.py), wrapped to return the conversations
# row PostGraphile exposes; like Helpline, an existing
# conversation costs one unlocked read.
COLD_FUNCTION = """
CREATE OR REPLACE FUNCTION bench_admin_conversation(customer uuid) RETURNS conversations
LANGUAGE plpgsql VOLATILE STRICT AS $$
DECLARE
    conversation conversations;
BEGIN
    SELECT * INTO conversation FROM conversations WHERE customer_id = customer;
    IF NOT FOUND THEN
        PERFORM bench_open_conversation(customer, NULL, NULL, {welcome});
        SELECT * INTO conversation FROM conversations WHERE customer_id = customer;
    END IF;
    RETURN conversation;
END;
$$
"""


def install() -> None:
    """Install the pinned PostGraphile from the lock file, unless it is there already."""
    if CLI.exists():
        return
    subprocess.run(
        ["npm", "ci", "--prefix", str(PACKAGE), "--no-audit", "--no-fund"],
        cwd=ROOT,
        check=True,
        timeout=600,
    )


def prepare(url: str) -> None:
    """Create the cold path's function in the benchmark database (run before serving)."""
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(function_path.function_sql())
        cursor.execute(sql.SQL(COLD_FUNCTION).format(welcome=sql.Literal(DEFAULT_WELCOME_MESSAGE)))
    conn.close()


@contextmanager
def serving(
    url: str,
    port: int,
    tmp: Path,
    *,
    verify_tokens: bool = False,
    secret: str | None = None,
    pool_size: int = 10,
) -> Iterator[Server]:
    """One PostGraphile process on loopback, as in production (no watch, no GraphiQL).

    ``verify_tokens`` needs the tokens' HS256 ``secret``; ``pool_size`` is PostGraphile's
    own default unless given.
    """
    command = [
        "node",
        str(CLI),
        "--connection",
        url,
        "--schema",
        "public",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-pool-size",
        str(pool_size),
        "--disable-graphiql",
        "--disable-query-log",
    ]
    if verify_tokens:
        if not secret:
            raise ValueError("verify_tokens needs the tokens' secret")
        command += [
            "--jwt-secret",
            secret,
            "--jwt-verify-algorithms",
            "HS256",
            "--jwt-verify-audience",
            "authenticated",
            "--jwt-role",
            "pg_role",  # a claim Helpline's tokens lack: no SET ROLE, no grants needed
        ]
    env = {**os.environ, "NODE_ENV": "production", "PGOPTIONS": "-c timezone=UTC"}
    log = tmp / "postgraphile.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        server = Server("postgraphile", port, process, log)
        wait_until_serving(f"{server.base}/graphql", process, log)
        _wait_for_schema(server)
        yield server
    finally:
        stop(process)


def _wait_for_schema(server: Server) -> None:
    """PostGraphile listens before its schema is built: wait until a POST gets data."""
    response = httpx.post(f"{server.base}/graphql", json={"query": "{ __typename }"}, timeout=60)
    if response.status_code != 200 or "errors" in response.json():
        raise RuntimeError(
            f"postgraphile: HTTP {response.status_code}: {response.text[:300]}\n"
            + server.log.read_text()[-2000:]
        )
