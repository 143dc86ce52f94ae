"""Operations generated from the schema (valid and invalid) never break the server or the data."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import from_schema, nodes
from hypothesis_graphql._strategies.mode import Mode

from gql.ops.export_schema import export
from repo.database import database
from repo.integrity import find_orphaned_conversations
from tests.e2e.conftest import GraphQLClient
from tests.factories import (
    first_contact,
    make_admin,
    make_legacy_user,
    make_orphaned_conversation,
    make_user,
)

EXAMPLES_PER_BACKEND = 300  # valid and invalid operations both met (asserted below)
LEAKS = re.compile(r"Traceback|psycopg|sqlite3|peewee|SELECT |INSERT |UPDATE |File \"", re.I)

pytestmark = pytest.mark.timeout(300)


def test_generated_operations_never_fail_the_server(client: GraphQLClient) -> None:
    admin = make_admin()
    known = [make_user(), make_legacy_user(), admin]
    conversation = first_contact(known[0]).conversation.id
    legacy_orphan = make_orphaned_conversation(make_user(), admin)  # for the repair to find
    ids = st.sampled_from([*known, conversation]) | st.uuids()
    # times as clients send them: with a zone or without, past, near and far, and not times
    times = st.datetimes(timezones=st.none() | st.just(UTC)).map(datetime.isoformat)
    scalars = {
        "UUID": ids.map(str).map(nodes.String),
        "DateTime": (times | st.text(max_size=12)).map(nodes.String),
    }
    sdl = export()
    operations = st.one_of(
        from_schema(sdl, custom_scalars=scalars, mode=Mode.POSITIVE),
        from_schema(sdl, custom_scalars=scalars, mode=Mode.NEGATIVE),
    )
    outcomes: dict[str, int] = {}
    sent: list[str] = []

    @settings(
        max_examples=EXAMPLES_PER_BACKEND,
        derandomize=True,  # the same operations every run, so a failure reproduces
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(operation=operations)
    def run(operation: str) -> None:
        sent.append(operation)
        response = client.request(operation)
        assert response.status_code < 500, (operation, response.text)
        body = response.json()
        for outcome in [e["extensions"]["code"] for e in body.get("errors", [])] or ["ok"]:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        for error in body.get("errors", []):
            assert error["extensions"]["code"] != "INTERNAL_SERVER_ERROR", (operation, body)
            assert not LEAKS.search(error["message"]), (operation, error)

    run()

    assert len(sent) >= EXAMPLES_PER_BACKEND
    assert outcomes["ok"] > 0 and outcomes["GRAPHQL_VALIDATION_FAILED"] > 0, outcomes
    with database.connection_context():
        per_customer = database.execute_sql(
            "SELECT customer_id FROM conversations GROUP BY customer_id HAVING COUNT(*) > 1"
        ).fetchall()
    assert per_customer == []
    assert {o.id for o in find_orphaned_conversations()} <= {legacy_orphan}
