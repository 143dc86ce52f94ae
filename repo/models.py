"""Peewee models of the tables. The schema itself is owned by the SQL migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import peewee

from repo.backend import stored_timestamp
from repo.database import database


class CanonicalUUIDField(peewee.Field):
    """A uuid column on PostgreSQL; lower-case dashed TEXT on SQLite."""

    field_type = "UUID"

    def db_value(self, value: Any) -> str | None:
        if value is None:
            return None
        return str(value if isinstance(value, UUID) else UUID(str(value)))

    def python_value(self, value: Any) -> UUID | None:
        if value is None or isinstance(value, UUID):
            return value
        return UUID(str(value))


class UTCDateTimeField(peewee.Field):
    """A timestamptz on PostgreSQL; millisecond UTC text on SQLite. Python sees aware UTC."""

    field_type = "TIMESTAMPTZ"

    def db_value(self, value: Any) -> Any:
        if value is None or not isinstance(value, datetime):
            return value
        return stored_timestamp(_as_utc(value))

    def python_value(self, value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return _as_utc(datetime.fromisoformat(value))
        return _as_utc(value)


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


class User(BaseModel):
    id = CanonicalUUIDField(primary_key=True)
    email = peewee.TextField(unique=True)
    full_name = peewee.TextField(null=True)
    profile_picture_url = peewee.TextField(null=True)
    created_at = UTCDateTimeField()

    class Meta:
        table_name = "users"


class Profile(BaseModel):
    id = CanonicalUUIDField(primary_key=True)
    name = peewee.TextField()
    avatar_url = peewee.TextField(default="")
    is_admin = peewee.BooleanField(default=False)
    is_online = peewee.BooleanField(default=False)
    created_at = UTCDateTimeField()

    class Meta:
        table_name = "profiles"


class Conversation(BaseModel):
    id = CanonicalUUIDField(primary_key=True)
    customer = peewee.ForeignKeyField(Profile, column_name="customer_id", backref="+")
    admin = peewee.ForeignKeyField(Profile, column_name="admin_id", backref="+")
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()
    last_message_at = UTCDateTimeField(null=True)
    status = peewee.TextField(default="OPEN")  # OPEN, SNOOZED, RESOLVED (repo/lifecycle.py)
    snoozed_until = UTCDateTimeField(null=True)
    resolved_at = UTCDateTimeField(null=True)
    # the customer's oldest message no staff message has followed yet (None: staff spoke last)
    waiting_since = UTCDateTimeField(null=True)

    class Meta:
        table_name = "conversations"


class AdminConversationCount(BaseModel):
    """How many conversations an admin holds: what a first contact balances."""

    admin = peewee.ForeignKeyField(Profile, column_name="admin_id", primary_key=True, backref="+")
    conversation_count = peewee.IntegerField(default=0)
    open_count = peewee.IntegerField(default=0)  # of those, the OPEN ones: what is balanced
    # first contacts that chose this admin and have not committed their conversation yet
    choices_in_flight = peewee.IntegerField(default=0)

    class Meta:
        table_name = "admin_conversation_counts"


class ConversationAssignmentTotal(BaseModel):
    """Conversations handed over by commands outside the servers, by reason (admin_removed)."""

    reason = peewee.TextField(primary_key=True)
    total = peewee.BigIntegerField(default=0)

    class Meta:
        table_name = "conversation_assignment_totals"


class Message(BaseModel):
    id = CanonicalUUIDField(primary_key=True)
    conversation = peewee.ForeignKeyField(Conversation, column_name="conversation_id", backref="+")
    sender = peewee.ForeignKeyField(Profile, column_name="sender_id", backref="+")
    content = peewee.TextField()
    created_at = UTCDateTimeField()
    client_message_id = peewee.CharField(max_length=64, null=True)  # the sender's own id for it

    class Meta:
        table_name = "messages"


class ConversationRead(BaseModel):
    conversation = peewee.ForeignKeyField(Conversation, column_name="conversation_id", backref="+")
    reader = peewee.ForeignKeyField(Profile, column_name="reader_id", backref="+")
    last_read_at = UTCDateTimeField()

    class Meta:
        table_name = "conversation_reads"
        primary_key = peewee.CompositeKey("conversation", "reader")


class Presence(BaseModel):
    """Sockets a server process holds for a profile; rows of a silent process expire."""

    profile = peewee.ForeignKeyField(Profile, column_name="profile_id", backref="+")
    process_id = CanonicalUUIDField()
    sockets = peewee.IntegerField()
    seen_at = UTCDateTimeField()

    class Meta:
        table_name = "presence"
        primary_key = peewee.CompositeKey("profile", "process_id")


ALL_MODELS = (
    User,
    Profile,
    Conversation,
    AdminConversationCount,
    Message,
    ConversationRead,
    Presence,
)
