"""The migrated schema: constraint names, defaults, the users->profiles trigger, re-runs."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import peewee
import pytest

from gql.http.settings import Settings
from repo.database import database, is_sqlite
from repo.migrate import migrate
from repo.models import Conversation, Message, Profile, User
from tests.factories import constraints_bypassed, count_rows, make_admin, make_user

pytestmark = pytest.mark.usefixtures("db")


def test_migrations_rerun_as_a_no_op(settings: Settings) -> None:
    assert migrate(settings.database) == []


def test_inserting_a_user_creates_its_profile_in_the_same_statement() -> None:
    user_id = uuid4()
    with database.connection_context():
        User.insert(id=user_id, email="new@example.com", full_name="New Person").execute()
        profile = Profile.get_by_id(user_id)
    assert (profile.name, profile.avatar_url, profile.is_admin, profile.is_online) == (
        "New Person",
        "",
        False,
        False,
    )


def test_a_conversation_without_a_customer_profile_is_rejected_by_the_database() -> None:
    admin_id = make_admin()
    with database.connection_context(), pytest.raises(peewee.IntegrityError) as raised:
        Conversation.insert(id=uuid4(), customer=uuid4(), admin=admin_id).execute()
    if not is_sqlite():
        assert raised.value.__context__.diag.constraint_name == "conversations_customer_id_fkey"  # type: ignore[union-attr]
    assert count_rows("conversations") == 0


def test_a_second_conversation_for_a_customer_is_rejected_by_the_database() -> None:
    admin_id = make_admin()
    customer = uuid4()
    with database.connection_context():
        User.insert(id=customer, email="c@example.com").execute()
        Conversation.insert(id=uuid4(), customer=customer, admin=admin_id).execute()
        with pytest.raises(peewee.IntegrityError) as raised:
            Conversation.insert(id=uuid4(), customer=customer, admin=admin_id).execute()
    if not is_sqlite():
        assert raised.value.__context__.diag.constraint_name == "conversations_customer_id_key"  # type: ignore[union-attr]


def test_columns_the_seed_sql_leaves_out_get_database_defaults() -> None:
    user_id, admin_id, conversation_id = uuid4(), make_admin(), uuid4()
    p = "?" if is_sqlite() else "%s"
    with constraints_bypassed() as cursor:
        cursor.execute(
            f"INSERT INTO profiles (id, name, avatar_url) VALUES ({p}, 'Legacy', '')",
            (str(user_id),),
        )
        cursor.execute(
            f"INSERT INTO conversations (id, customer_id, admin_id) VALUES ({p}, {p}, {p})",
            (str(conversation_id), str(user_id), str(admin_id)),
        )
    with database.connection_context():
        profile = Profile.get_by_id(user_id)
        conversation = Conversation.get_by_id(conversation_id)
    assert (profile.is_admin, profile.is_online) == (False, False)
    assert profile.created_at.tzinfo is not None
    assert conversation.created_at == conversation.updated_at
    assert conversation.last_message_at is None


@pytest.mark.parametrize("spelling", [str.upper, lambda text: text.replace("-", "")])
def test_ids_are_stored_in_one_canonical_form(spelling) -> None:  # type: ignore[no-untyped-def]
    user_id = uuid4()
    with database.connection_context():
        p = database.param
        insert = f"INSERT INTO users (id, email) VALUES ({p}, 'x@example.com')"
        if is_sqlite():  # TEXT ids: other spellings are refused, so joins never miss
            with pytest.raises(peewee.IntegrityError):
                database.execute_sql(insert, (spelling(str(user_id)),))
        else:  # uuid ids: PostgreSQL normalises every spelling
            database.execute_sql(insert, (spelling(str(user_id)),))
            stored = database.execute_sql("SELECT id::text FROM users").fetchone()[0]
            assert stored == str(user_id)


def test_constraints_and_trigger_carry_the_names_operators_use() -> None:
    with database.connection_context():
        if is_sqlite():
            ddl = " ".join(
                r[0]
                for r in database.execute_sql(
                    "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"
                ).fetchall()
            )
            names = {
                n
                for n in (
                    "conversations_customer_id_fkey",
                    "conversations_customer_id_key",
                    "users_create_profile",
                )
                if n in ddl
            }
        else:
            names = {
                r[0]
                for r in database.execute_sql(
                    "SELECT conname FROM pg_constraint WHERE convalidated "
                    "UNION SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
                ).fetchall()
            }
    assert {
        "conversations_customer_id_fkey",
        "conversations_customer_id_key",
        "users_create_profile",
    } <= names


def test_a_client_message_id_is_unique_per_conversation_and_sender_but_may_be_absent() -> None:
    admin_id, customer_id, conversation_id = make_admin(), make_user(), uuid4()
    with database.connection_context():
        Conversation.insert(id=conversation_id, customer=customer_id, admin=admin_id).execute()

        def insert(client_message_id: str | None) -> None:
            Message.insert(
                id=uuid4(),
                conversation=conversation_id,
                sender=admin_id,
                content="hi",
                created_at=datetime.now(UTC),
                client_message_id=client_message_id,
            ).execute()

        insert(None)
        insert(None)
        insert("c-1")
        with pytest.raises(peewee.IntegrityError) as raised, database.atomic():
            insert("c-1")
    if not is_sqlite():
        assert raised.value.__context__.diag.constraint_name == "messages_client_message_id_key"  # type: ignore[union-attr]
    assert count_rows("messages") == 3
