"""SQLite under the worker thread pool: first contacts and messages from 16 threads at once.

The embedded default (WAL, a busy timeout, BEGIN IMMEDIATE for every write transaction) must
let writers queue for the lock instead of failing with "database is locked".
"""

from __future__ import annotations

import random
from collections import Counter
from functools import partial
from typing import Any

import pytest

from repo.database import database
from repo.ids import MessageId, ProfileId
from repo.messages import send_message
from tests.factories import first_contact, make_admin, make_legacy_user, make_user
from tests.integration.test_races import run_at_once

pytestmark = [
    pytest.mark.usefixtures("db"),
    pytest.mark.timeout(60),
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]
THREADS = 16
OPERATIONS_EACH = 25


def rows(sql: str) -> list[tuple[Any, ...]]:
    with database.connection_context():
        return list(database.execute_sql(sql).fetchall())


def test_sixteen_threads_opening_and_writing_never_find_the_database_locked() -> None:
    admin = make_admin()
    existing = [make_user() for _ in range(8)]
    for customer in existing:
        first_contact(customer)
    new = [make_legacy_user() for _ in range(12)] + [make_user() for _ in range(12)]
    customers = existing + new

    def operations(seed: int) -> dict[MessageId, str]:
        """Open a random customer's conversation; most times, then write in it."""
        rng = random.Random(seed)
        sent: dict[MessageId, str] = {}
        for n in range(OPERATIONS_EACH):
            customer = rng.choice(customers)
            conversation = first_contact(customer).conversation.id
            writer = rng.choice([None, admin, ProfileId(customer), ProfileId(customer)])
            if writer is None:
                continue  # opening only, as a widget that is opened and closed
            text = f"thread {seed}, operation {n}"
            sent[send_message(conversation, text, sender_id=writer).id] = text
        return sent

    by_thread = run_at_once([partial(operations, seed) for seed in range(THREADS)])
    sent = {message_id: text for messages in by_thread for message_id, text in messages.items()}

    conversations = rows("SELECT customer_id FROM conversations")
    assert Counter(customer for (customer,) in conversations) == Counter(map(str, customers))
    stored = rows("SELECT id, content FROM messages WHERE content LIKE 'thread %'")
    assert Counter(message_id for message_id, _ in stored) == Counter(str(m) for m in sent)
    assert dict(stored) == {str(message_id): text for message_id, text in sent.items()}
    welcomes = rows("SELECT COUNT(*) FROM messages WHERE content NOT LIKE 'thread %'")
    assert welcomes == [(len(customers),)]
    stale = rows(
        "SELECT c.id FROM conversations c WHERE c.last_message_at IS NOT"
        " (SELECT MAX(m.created_at) FROM messages m WHERE m.conversation_id = c.id)"
    )
    assert stale == []
