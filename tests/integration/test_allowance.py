"""Each sender's allowance of messages (repo/allowance.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from repo import allowance
from repo.allowance import Allowance, SendLimits
from repo.database import database
from repo.errors import RateLimited
from repo.ids import ProfileId
from repo.messages import send_message
from repo.views import ConversationView
from tests.factories import count_rows, first_contact, make_admin, make_user

pytestmark = pytest.mark.usefixtures("db")
LIMITS = SendLimits(customer_per_minute=3, staff_per_minute=5)


@pytest.fixture
def conversation() -> ConversationView:
    make_admin()
    return first_contact(make_user()).conversation


def send(
    conversation: ConversationView, sender: ProfileId | None, text: str, key: str | None = None
) -> list[Allowance]:
    heard: list[Allowance] = []
    send_message(
        conversation.id,
        text,
        sender_id=sender,
        client_message_id=key,
        limits=LIMITS,
        on_allowance=heard.append,
    )
    return heard


def move_clock(sender: ProfileId, seconds: float) -> None:
    """As if ``seconds`` had passed since the sender's bucket was last refilled."""
    with database.connection_context():
        database.execute_sql(
            "UPDATE send_allowances SET refilled_at = refilled_at - %s WHERE sender_id = %s"
            if database.param == "%s"
            else "UPDATE send_allowances SET refilled_at = refilled_at - ? WHERE sender_id = ?",
            (seconds, str(sender)),
        )


def test_a_customer_sends_a_minutes_worth_then_is_refused_and_nothing_is_stored(
    conversation: ConversationView,
) -> None:
    customer = conversation.customer.id
    heard = [send(conversation, customer, f"m{i}") for i in range(3)]

    with pytest.raises(RateLimited) as refused:
        send(conversation, customer, "one too many")

    assert [h[0].remaining for h in heard] == [2, 1, 0]
    assert {h[0].limit for h in heard} == {3}
    assert refused.value.limit == 3
    assert 19 <= refused.value.retry_after_s <= 20  # one message every 20 s at 3 a minute
    assert count_rows("messages") == 4  # the welcome message and three


def test_the_allowance_refills_with_time_up_to_a_minutes_worth(
    conversation: ConversationView,
) -> None:
    customer = conversation.customer.id
    for i in range(3):
        send(conversation, customer, f"m{i}")

    move_clock(customer, 20.5)  # one message's worth
    assert send(conversation, customer, "again")[0].remaining == 0
    with pytest.raises(RateLimited):
        send(conversation, customer, "too soon")

    move_clock(customer, 3600)  # an hour idle fills it to a minute's worth, no more
    assert [send(conversation, customer, f"n{i}")[0].remaining for i in range(3)] == [2, 1, 0]


def test_a_refused_sender_hears_when_to_try_again(conversation: ConversationView) -> None:
    customer = conversation.customer.id
    for i in range(3):
        send(conversation, customer, f"m{i}")
    move_clock(customer, 15)  # three quarters of a message

    heard: list[Allowance] = []
    with pytest.raises(RateLimited) as refused:
        send_message(
            conversation.id, "x", sender_id=customer, limits=LIMITS, on_allowance=heard.append
        )

    assert heard == [Allowance(3, 0, retry_after_s=refused.value.retry_after_s)]
    assert 4 <= refused.value.retry_after_s <= 5


def test_a_retry_with_a_known_client_message_id_takes_nothing(
    conversation: ConversationView,
) -> None:
    customer = conversation.customer.id
    send(conversation, customer, "hello", key="k-1")
    for _ in range(5):
        assert send(conversation, customer, "hello", key="k-1")[0].remaining == 2
    for i in range(2):
        send(conversation, customer, f"m{i}", key=f"n-{i}")

    with pytest.raises(RateLimited):
        send(conversation, customer, "new", key="k-2")
    (answered,) = send(conversation, customer, "hello", key="k-1")  # still answered, and
    assert (answered.remaining, answered.retry_after_s) == (0, None)  # no Retry-After on it
    assert count_rows("messages") == 4


def test_staff_have_their_own_rate_and_the_admins_voice_none(
    conversation: ConversationView,
) -> None:
    admin = conversation.admin.id
    assert [send(conversation, admin, f"a{i}")[0].remaining for i in range(5)] == [4, 3, 2, 1, 0]
    with pytest.raises(RateLimited) as refused:
        send(conversation, admin, "one too many")
    assert refused.value.limit == 5

    for i in range(10):  # a server credential writing as the conversation's admin
        assert send(conversation, None, f"s{i}") == []


def test_each_sender_has_their_own_allowance(conversation: ConversationView) -> None:
    other = first_contact(make_user()).conversation
    for i in range(3):
        send(conversation, conversation.customer.id, f"m{i}")

    assert send(other, other.customer.id, "mine")[0].remaining == 2


def test_a_refusal_read_after_the_bucket_refilled_still_says_when_to_retry(
    conversation: ConversationView,
) -> None:
    """The refusal's figures come from a statement after the refused take: the bucket may
    have gained a message in between. The answer stays a refusal with a retry in 1 s."""
    customer = conversation.customer.id
    for i in range(3):
        send(conversation, customer, f"m{i}")
    move_clock(customer, 25)  # as if the refill came between the take and the read

    with database.connection_context():
        assert allowance.refused(customer, 3) == Allowance(3, 0, retry_after_s=1)
