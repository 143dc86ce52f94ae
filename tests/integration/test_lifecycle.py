"""A conversation's life (repo/lifecycle.py, repo/status.py), on SQLite and PostgreSQL: resolved,
snoozed, reopened by staff or by the customer's next message, woken at its time; the admins'
open counts follow every change, and the team is balanced on them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from repo import admins, events, lifecycle
from repo.checks import run_checks
from repo.conversations import find_conversation
from repo.database import database, is_sqlite
from repo.errors import ConversationNotFound, InvalidInput
from repo.ids import ConversationId, ProfileId
from repo.integrity import find_count_drift, recount_admin_conversations
from repo.messages import send_message
from repo.models import AdminConversationCount, Conversation
from repo.views import ConversationView
from tests.factories import first_contact, make_admin, make_user

pytestmark = pytest.mark.usefixtures("db")


def later(**delta: float) -> datetime:
    return datetime.now(UTC) + timedelta(**delta)


def open_count(admin: ProfileId) -> int:
    return admins.open_conversation_count(admin)


@pytest.fixture
def admin() -> ProfileId:
    return make_admin()


@pytest.fixture
def conversation(admin: ProfileId) -> ConversationView:
    return first_contact(make_user()).conversation


def customer_writes(conversation: ConversationView, text: str = "hello?") -> None:
    send_message(conversation.id, text, sender_id=conversation.customer.id)


def test_a_new_conversation_is_open_and_counted_open(
    admin: ProfileId, conversation: ConversationView
) -> None:
    assert (conversation.status, conversation.snoozed_until, conversation.resolved_at) == (
        "OPEN",
        None,
        None,
    )
    assert conversation.waiting_since is None  # the welcome message is the admin's
    assert (admins.assigned_conversation_count(admin), open_count(admin)) == (1, 1)


def test_resolving_closes_the_problem_once_and_uncounts_it(
    admin: ProfileId, conversation: ConversationView
) -> None:
    resolved = lifecycle.resolve_conversation(conversation.id)
    again = lifecycle.resolve_conversation(conversation.id)

    assert (resolved.changed, again.changed) == (True, False)
    assert resolved.conversation.status == "RESOLVED"
    assert resolved.conversation.resolved_at is not None
    assert again.conversation.resolved_at == resolved.conversation.resolved_at
    assert (admins.assigned_conversation_count(admin), open_count(admin)) == (1, 0)


def test_snoozing_parks_it_until_a_time_and_snoozing_again_sets_the_new_time(
    admin: ProfileId, conversation: ConversationView
) -> None:
    first = lifecycle.snooze_conversation(conversation.id, later(hours=1)).conversation
    second = lifecycle.snooze_conversation(conversation.id, later(days=2)).conversation

    assert first.status == second.status == "SNOOZED"
    assert first.snoozed_until is not None and second.snoozed_until is not None
    assert second.snoozed_until - first.snoozed_until > timedelta(days=1)
    assert open_count(admin) == 0
    reopened = lifecycle.reopen_conversation(conversation.id).conversation
    assert (reopened.status, reopened.snoozed_until, open_count(admin)) == ("OPEN", None, 1)


@pytest.mark.parametrize(
    ("until", "reason"),
    [
        (datetime.now(UTC) - timedelta(minutes=1), "in the future"),
        (datetime.now(UTC) + timedelta(days=91), "at most 90 days"),
        (datetime.now() + timedelta(hours=1), "time zone"),  # noqa: DTZ005: naive on purpose
    ],
)
def test_a_snooze_time_that_is_past_too_far_or_without_a_zone_is_refused(
    conversation: ConversationView, until: datetime, reason: str
) -> None:
    with pytest.raises(InvalidInput, match=reason):
        lifecycle.snooze_conversation(conversation.id, until)
    assert find_conversation(conversation.id).status == "OPEN"  # type: ignore[union-attr]


def test_an_unknown_conversation_is_not_found(admin: ProfileId) -> None:
    with pytest.raises(ConversationNotFound):
        lifecycle.resolve_conversation(ConversationId(make_user()))


@pytest.mark.parametrize("closed", ["resolve", "snooze"])
def test_the_customer_s_message_reopens_the_same_conversation(
    admin: ProfileId, conversation: ConversationView, closed: str
) -> None:
    if closed == "resolve":
        lifecycle.resolve_conversation(conversation.id)
    else:
        lifecycle.snooze_conversation(conversation.id, later(hours=3))

    customer_writes(conversation)

    now = find_conversation(conversation.id)
    assert now is not None and now.status == "OPEN"
    assert (now.resolved_at, now.snoozed_until) == (None, None)
    assert Conversation.select().count() == 1  # never a second conversation
    assert open_count(admin) == 1


def test_staff_messages_leave_a_resolved_conversation_resolved(
    admin: ProfileId, conversation: ConversationView
) -> None:
    lifecycle.resolve_conversation(conversation.id)
    send_message(conversation.id, "one more thing from us", sender_id=admin)
    send_message(conversation.id, "in the admin's voice")

    now = find_conversation(conversation.id)
    assert now is not None and now.status == "RESOLVED"
    assert open_count(admin) == 0


def test_a_customer_waits_from_their_oldest_unanswered_message_until_staff_write(
    admin: ProfileId, conversation: ConversationView
) -> None:
    customer_writes(conversation, "first")
    first = find_conversation(conversation.id)
    customer_writes(conversation, "second")
    second = find_conversation(conversation.id)
    send_message(conversation.id, "answer", sender_id=admin)
    answered = find_conversation(conversation.id)

    assert first is not None and second is not None and answered is not None
    assert first.waiting_since == first.last_message_at
    assert second.waiting_since == first.waiting_since  # the oldest unanswered one
    assert answered.waiting_since is None


def test_a_first_contact_goes_to_the_admin_with_fewest_open_conversations() -> None:
    busy_in_the_past = make_admin("Back From Holiday")
    for _ in range(3):
        done = first_contact(make_user()).conversation
        lifecycle.resolve_conversation(done.id)
    with_open_work = make_admin("Has Open Work")  # younger: loses ties
    for _ in range(2):  # the rule gives these to the admin with no open work
        first_contact(make_user())
    assert (open_count(busy_in_the_past), open_count(with_open_work)) == (1, 1)
    lifecycle.resolve_conversation(
        first_contact(make_user()).conversation.id  # to the older on a tie
    )

    chosen = first_contact(make_user()).conversation.admin.id

    assert admins.assigned_conversation_count(busy_in_the_past) == 6  # 4 resolved, 2 open
    assert chosen == busy_in_the_past  # 1 open against 1: the older one


def test_a_snoozed_conversation_wakes_at_its_time_once(
    admin: ProfileId, conversation: ConversationView
) -> None:
    lifecycle.snooze_conversation(conversation.id, later(minutes=5))
    heard: list[events.Event] = []
    events.add_local_listener(heard.append)
    try:
        assert lifecycle.wake_snoozed() == 0  # not yet
        with database.connection_context():  # its time comes
            Conversation.update(snoozed_until=datetime.now(UTC) - timedelta(seconds=1)).execute()
        woken = lifecycle.wake_snoozed()
        again = lifecycle.wake_snoozed()
    finally:
        events.remove_local_listener(heard.append)

    assert (woken, again) == (1, 0)
    now = find_conversation(conversation.id)
    assert now is not None and (now.status, now.snoozed_until) == ("OPEN", None)
    assert open_count(admin) == 1
    if is_sqlite():  # in-process events (PostgreSQL's go out as NOTIFY)
        assert heard == [events.StatusChanged(conversation.id, "SNOOZED", "OPEN")]


def test_an_open_count_drift_is_reported_and_repaired(
    admin: ProfileId, conversation: ConversationView
) -> None:
    lifecycle.resolve_conversation(first_contact(make_user()).conversation.id)
    with database.connection_context():  # as a release before the life cycle would leave it
        AdminConversationCount.update(open_count=7).execute()

    [drift] = find_count_drift()
    checks = {c.name: c for c in run_checks()}
    assert (drift.open_counted, drift.open_held, drift.counted, drift.held) == (7, 1, 2, 2)
    assert checks["admins_whose_count_differs"].status == "violation"

    assert recount_admin_conversations(dry_run=False) == (1, 0)
    assert open_count(admin) == 1


def test_a_status_notification_is_not_read_as_a_message_by_the_release_before() -> None:
    conversation = ConversationId(make_user())
    payload = events.encode_event(events.StatusChanged(conversation, "OPEN", "RESOLVED"))

    assert events.decode(payload) == events.StatusChanged(conversation, "OPEN", "RESOLVED")
    # the release before splits a payload at ':' into exactly two parts, else ignores it
    with pytest.raises(ValueError, match="too many values"):
        _, _ = payload.split(":")


def test_customers_writing_while_staff_resolve_and_snooze_leave_exact_counts(
    admin: ProfileId,
) -> None:
    chats = [first_contact(make_user()).conversation for _ in range(3)]

    def churn(chat: ConversationView, turn: int) -> None:
        for step in range(6):
            action = (turn + step) % 3
            if action == 0:
                lifecycle.resolve_conversation(chat.id)
            elif action == 1:
                lifecycle.snooze_conversation(chat.id, later(hours=1 + step))
            else:
                customer_writes(chat, f"turn {turn} step {step}")

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda job: churn(*job), [(c, t) for c in chats for t in range(2)]))

    assert find_count_drift() == []  # every change moved the open count with it, once
    for chat in chats:
        now = find_conversation(chat.id)
        assert now is not None
        assert (now.status == "RESOLVED") == (now.resolved_at is not None)
        assert (now.status == "SNOOZED") == (now.snoozed_until is not None)


def test_auto_resolve_closes_quiet_conversations_and_never_a_waiting_or_snoozed_one(
    admin: ProfileId,
) -> None:
    quiet, waiting, snoozed, recent = (first_contact(make_user()).conversation for _ in range(4))
    customer_writes(waiting)  # the customer's message is the last: they wait
    lifecycle.snooze_conversation(snoozed.id, later(days=3))
    with database.connection_context():  # all but one went quiet two days ago
        Conversation.update(last_message_at=datetime.now(UTC) - timedelta(days=2)).where(
            Conversation.id != recent.id
        ).execute()

    resolved = lifecycle.auto_resolve(timedelta(hours=24))
    again = lifecycle.auto_resolve(timedelta(hours=24))

    assert (resolved, again) == (1, 0)
    statuses = {c.id: find_conversation(c.id).status for c in (quiet, waiting, snoozed, recent)}  # type: ignore[union-attr]
    assert statuses == {
        quiet.id: "RESOLVED",
        waiting.id: "OPEN",
        snoozed.id: "SNOOZED",
        recent.id: "OPEN",
    }
    assert open_count(admin) == 2
