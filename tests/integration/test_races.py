"""Concurrent callers, each thread on its own pooled connection, against a real database."""

from __future__ import annotations

import random
from typing import TypeVar

import pytest

from repo.conversations import find_conversation
from repo.messages import list_messages, send_message
from tests.factories import count_rows, first_contact, make_admin, make_legacy_user, make_user
from tests.racing import run_at_once

pytestmark = [pytest.mark.usefixtures("db"), pytest.mark.timeout(60)]

T = TypeVar("T")


@pytest.mark.parametrize("has_profile", [False, True], ids=["legacy-user", "signed-up-user"])
def test_concurrent_first_calls_create_one_conversation(has_profile: bool) -> None:
    make_admin()
    customer_id = make_user() if has_profile else make_legacy_user()

    results = run_at_once([lambda: first_contact(customer_id)] * 32)

    assert len({r.conversation.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert sum(r.profile_created for r in results) == (0 if has_profile else 1)
    assert (count_rows("profiles"), count_rows("conversations"), count_rows("messages")) == (
        2,
        1,
        1,
    )
    assert len(list_messages(results[0].conversation.id).messages) == 1


def test_concurrent_calls_over_many_customers_finish_without_deadlock() -> None:
    make_admin()
    customers = [make_legacy_user() for _ in range(12)] + [make_user() for _ in range(12)]

    def caller(seed: int) -> list[object]:
        order = random.Random(seed).sample(customers, len(customers))
        return [first_contact(c).conversation.id for c in order]

    results = run_at_once([lambda seed=seed: caller(seed) for seed in range(12)])

    assert all(len(ids) == len(customers) for ids in results)
    assert count_rows("conversations") == len(customers)
    assert count_rows("messages") == len(customers)
    assert count_rows("profiles") == len(customers) + 1
    assert count_rows("users") == len(customers) + 1


@pytest.mark.parametrize("sender", ["customer", "service"])
def test_concurrent_sends_with_one_client_message_id_store_one_message(sender: str) -> None:
    make_admin()
    conversation = first_contact(make_user()).conversation
    sender_id = conversation.customer.id if sender == "customer" else None

    sent = run_at_once(
        [
            lambda: send_message(
                conversation.id, "sent twice?", sender_id=sender_id, client_message_id="tap-1"
            )
        ]
        * 8
    )

    assert len({m.id for m in sent}) == 1
    assert len({m.created_at for m in sent}) == 1
    assert count_rows("messages") == 2  # the welcome message and this one
    after = find_conversation(conversation.id)
    assert after is not None and after.last_message_at == sent[0].created_at
