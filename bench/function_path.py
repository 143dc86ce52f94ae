"""Helpline's first contact as it was before issue #14: one call to a PL/pgSQL function.

Until then, PostgreSQL ran the first contact as ``helpline_open_conversation`` (migration
0004) in one round trip. Helpline now runs that sequence in Python (repo/conversations.py),
migration 0009 drops the function, and 0004 installs nothing. So the benchmark keeps a copy of
its own (bench/sql/open_conversation.sql, under another name) and serves it as a contender:
Helpline with its first contact swapped for that one call, everything else the same.

    uvicorn --factory bench.function_path:create_app   # what bench.api starts
"""

from __future__ import annotations

from starlette.applications import Starlette

from bench.common import ROOT
from gql.http.app import create_app as create_helpline
from repo import conversations
from repo.database import database
from repo.errors import CustomerNotFound, NoAdminAvailable
from repo.ids import CustomerId
from repo.units import unit_of_work
from repo.users import NewUser
from repo.views import AdminConversation

FUNCTION_SQL = ROOT / "bench" / "sql" / "open_conversation.sql"
FUNCTION = "bench_open_conversation"
_NO_USERS_ROW, _NO_ADMIN = "HL001", "HL002"  # the function's own SQLSTATEs


def function_sql() -> str:
    """The function migration 0004 once installed, under the benchmark's own name."""
    return FUNCTION_SQL.read_text()


@unit_of_work
def open_through_function(
    customer_id: CustomerId,
    *,
    welcome_message: str,
    new_user: NewUser | None = None,
    known_missing: bool = False,
) -> AdminConversation:
    """The first contact as one call to the function, then the conversation's read."""
    found = None if known_missing else conversations.find_admin_conversation(customer_id)
    if found is not None:
        return AdminConversation(found, created=False, profile_created=False)
    params = (
        str(customer_id),
        new_user.email if new_user else None,
        new_user.full_name if new_user else None,
        welcome_message,
    )
    try:
        _, created, profile_created = database.execute_sql(
            f"SELECT * FROM {FUNCTION}(%s, %s, %s, %s)", params
        ).fetchone()
    except Exception as exc:
        sqlstate = getattr(exc.__cause__ or exc.__context__, "pgcode", None)
        if sqlstate == _NO_USERS_ROW:
            raise CustomerNotFound(f"customer {customer_id} not found") from None
        if sqlstate == _NO_ADMIN:
            raise NoAdminAvailable("no admin is available") from None
        raise
    conversation = conversations.find_admin_conversation(customer_id)
    assert conversation is not None
    return AdminConversation(conversation, created=created, profile_created=profile_created)


def create_app() -> Starlette:
    """Helpline's app, its first contact answered by the function (the resolvers and the
    fast path call ``conversations.get_or_create_admin_conversation`` at call time)."""
    conversations.get_or_create_admin_conversation = open_through_function
    return create_helpline()
