"""get_or_create_admin_conversation on both backends: the post-mortem's bug and its guarantees."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from repo.conversations import find_admin_conversation
from repo.database import database
from repo.errors import CustomerNotFound, NoAdminAvailable
from repo.ids import CustomerId
from repo.messages import list_messages
from repo.models import Profile
from tests.conftest import TEST_WELCOME_MESSAGE, QueryLog
from tests.factories import count_rows, first_contact, make_admin, make_legacy_user, make_user

pytestmark = pytest.mark.usefixtures("db")


def test_customer_without_profile_gets_profile_and_conversation() -> None:
    admin_id = make_admin()
    customer_id = make_legacy_user(full_name="Lee Legacy", profile_picture_url="https://x/a.png")

    result = first_contact(customer_id)

    assert result.created and result.profile_created
    assert result.conversation.customer.id == customer_id
    assert result.conversation.customer.name == "Lee Legacy"
    assert result.conversation.customer.avatar_url == "https://x/a.png"
    assert result.conversation.admin.id == admin_id
    assert count_rows("profiles") == 2


def test_second_call_returns_the_same_conversation_uncreated() -> None:
    make_admin()
    customer_id = make_user()
    first = first_contact(customer_id)

    second = first_contact(customer_id)

    assert second.conversation.id == first.conversation.id
    assert (second.created, second.profile_created) == (False, False)
    assert count_rows("conversations") == 1


def test_new_conversation_starts_with_the_admins_welcome_message() -> None:
    admin_id = make_admin()
    conversation = first_contact(make_user()).conversation

    page = list_messages(conversation.id)

    assert [m.content for m in page.messages] == [TEST_WELCOME_MESSAGE]
    assert page.messages[0].sender.id == admin_id
    assert conversation.last_message_at == page.messages[0].created_at
    assert conversation.updated_at == page.messages[0].created_at


@pytest.mark.parametrize(
    ("full_name", "email", "expected"),
    [
        ("Ann Lee", "ann@example.com", "Ann Lee"),
        (None, "bo@example.com", "bo@example.com"),
        ("", "cy@example.com", "cy@example.com"),
    ],
)
def test_created_profile_is_named_from_the_users_row(
    full_name: str | None, email: str, expected: str
) -> None:
    make_admin()
    customer_id = make_legacy_user(full_name=full_name, email=email)

    customer = first_contact(customer_id).conversation.customer

    assert customer.name == expected
    assert customer.avatar_url == ""


def test_unknown_customer_gets_customer_not_found_and_nothing_is_written() -> None:
    make_admin()

    with pytest.raises(CustomerNotFound):
        first_contact(CustomerId(uuid4()))

    assert (count_rows("profiles"), count_rows("conversations"), count_rows("messages")) == (
        1,
        0,
        0,
    )


def test_without_an_admin_nothing_at_all_is_written() -> None:
    customer_id = make_legacy_user()

    with pytest.raises(NoAdminAvailable):
        first_contact(customer_id)

    assert (count_rows("profiles"), count_rows("conversations"), count_rows("messages")) == (
        0,
        0,
        0,
    )


def test_an_admin_is_never_assigned_to_themself() -> None:
    only_admin = make_admin()

    with pytest.raises(NoAdminAvailable):
        first_contact(CustomerId(only_admin))


def test_the_oldest_admin_takes_new_conversations() -> None:
    oldest = make_admin("First Admin")
    younger = make_admin("Second Admin")
    with database.connection_context():  # not the same millisecond, where the id decides
        created = Profile.select(Profile.created_at).where(Profile.id == oldest).scalar()
        Profile.update(created_at=created + timedelta(seconds=1)).where(
            Profile.id == younger
        ).execute()

    conversation = first_contact(make_user()).conversation

    assert conversation.admin.id == oldest
    assert conversation.admin.is_admin


def test_existing_conversation_costs_one_read_and_no_transaction(
    queries: QueryLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_admin()
    customer_id = make_user()
    first_contact(customer_id)
    queries.statements.clear()
    transactions: list[object] = []
    real_begin = database.obj.begin
    monkeypatch.setattr(
        database.obj, "begin", lambda *a, **k: transactions.append(a) or real_begin(*a, **k)
    )

    first_contact(customer_id)

    assert transactions == []
    assert len(queries.statements) == 1
    assert queries.statements[0].lstrip().upper().startswith("SELECT")
    assert "FOR UPDATE" not in queries.statements[0].upper()


def test_read_only_lookup_never_creates() -> None:
    make_admin()
    customer_id = make_legacy_user()

    assert find_admin_conversation(customer_id) is None
    assert count_rows("profiles") == 1
    assert Profile.select().where(Profile.id == customer_id).count() == 0
