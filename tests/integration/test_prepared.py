"""A prepared read returns exactly what peewee's own rendering of the same query returns."""

from __future__ import annotations

from uuid import uuid4

import pytest

from repo.conversations import conversation_query
from repo.database import database
from repo.messages import message_query, send_message
from repo.models import Conversation, Message
from repo.prepared import PreparedSelect
from tests.factories import first_contact, make_admin, make_user

pytestmark = pytest.mark.usefixtures("db")


def test_a_prepared_select_matches_peewee_row_for_row() -> None:
    make_admin()
    customers = [make_user(full_name=f"Customer {i}") for i in range(3)]
    for customer in customers[:2]:
        first_contact(customer)
    by_customer = PreparedSelect(lambda c: conversation_query().where(Conversation.customer == c))

    with database.connection_context():
        for customer in [*customers, uuid4()]:  # with a conversation, without, no such user
            expected = (
                conversation_query().where(Conversation.customer == customer).tuples().first()
            )
            assert by_customer.first(customer) == expected
            assert by_customer.first(customer) == expected  # and again, from the rendered SQL


def test_every_id_must_be_a_parameter_of_the_query() -> None:
    ignores_its_id = PreparedSelect(lambda _: conversation_query())
    with database.connection_context(), pytest.raises(ValueError, match="every id"):
        ignores_its_id.first(uuid4())


def test_prepared_rows_match_peewee_at_every_limit() -> None:
    make_admin()
    conversation = first_contact(make_user()).conversation.id
    for i in range(4):
        send_message(conversation, f"m{i}", sender_id=None)
    newest = PreparedSelect(
        lambda c: (
            message_query()
            .where(Message.conversation == c)
            .order_by(Message.created_at.desc(), Message.id.desc())
        )
    )

    with database.connection_context():
        for limit in (1, 3, 10):
            expected = list(
                message_query()
                .where(Message.conversation == conversation)
                .order_by(Message.created_at.desc(), Message.id.desc())
                .limit(limit)
                .tuples()
            )
            assert newest.rows(conversation, limit=limit) == expected
