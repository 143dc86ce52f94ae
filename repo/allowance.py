"""Each sender's allowance of messages: a token bucket per sender, kept in the database.

A sender may store ``per_minute`` messages at once, and one more every 60 / ``per_minute``
seconds after that (the bucket holds at most ``per_minute``). The bucket is a row of
``send_allowances``, taken from by the send's own statements inside its transaction: on
PostgreSQL folded into the one statement that stores the message (no round trip of its own),
so every process on the database shares it; on SQLite one more statement in the same
(serialized) transaction. Time is the database's clock, never an app process's.

Who pays is decided where the sender is (repo/messages.py): a customer writing in their own
conversation at the customer rate, staff at theirs; a message sent in the admin's voice by a
server credential (no sender given) is not limited. A retry with a client message id the
sender already used stores nothing and takes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from repo import backend
from repo.database import database
from repo.ids import ProfileId


@dataclass(frozen=True, slots=True)
class SendLimits:
    """Messages a minute per sender: a customer in their own conversation, and staff."""

    customer_per_minute: int
    staff_per_minute: int


@dataclass(frozen=True, slots=True)
class Allowance:
    """What a sender's bucket holds after a send (``remaining`` whole messages), or, when
    refused, how long until it holds one (``retry_after_s``)."""

    limit: int
    remaining: int
    retry_after_s: int | None = None


_TAKE = """
    INSERT INTO send_allowances AS a (sender_id, tokens, refilled_at)
    SELECT {sender}, {burst} - 1, {now} WHERE {not_a_retry}
    ON CONFLICT (sender_id) DO UPDATE
    SET tokens = {held} - 1, refilled_at = {now}
    WHERE {held} >= 1
    RETURNING tokens"""
_NOT_A_RETRY = """NOT EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = {conversation}
        AND m.sender_id = {sender} AND m.client_message_id = {client_message_id})"""
_HELD = "SELECT {held} FROM send_allowances a WHERE a.sender_id = {sender}"


def _render(template: str, *, sqlite: bool, keyed: bool = False) -> str:
    """A statement for one backend: its placeholders, its clock and its LEAST."""
    names = ("sender", "conversation", "client_message_id", "burst", "per_second")
    marks = {name: f":{name}" if sqlite else f"%({name})s" for name in names}
    if not sqlite:
        marks["sender"] += "::uuid"
        marks["conversation"] += "::uuid"
    # julianday has millisecond precision, as the messages' own timestamps on SQLite
    now = (
        "((julianday('now') - 2440587.5) * 86400.0)"
        if sqlite
        else "extract(epoch FROM clock_timestamp())::float8"
    )
    least = "MIN" if sqlite else "LEAST"
    held = f"{least}({marks['burst']}, a.tokens + ({now} - a.refilled_at) * {marks['per_second']})"
    not_a_retry = _NOT_A_RETRY.format(**marks) if keyed else "true"
    return template.format(now=now, held=held, not_a_retry=not_a_retry, **marks)


# Take one message from the sender's bucket: a row (what the bucket holds after) when taken;
# none when it holds less than one, or when the send retries a message stored before (keyed).
TAKE = {
    (sqlite, keyed): _render(_TAKE, sqlite=sqlite, keyed=keyed)
    for sqlite in (False, True)
    for keyed in (False, True)
}
HELD = {sqlite: _render(_HELD, sqlite=sqlite) for sqlite in (False, True)}


def parameters(sender: ProfileId, per_minute: int) -> dict[str, object]:
    """The bucket's parameters for TAKE (the send adds its conversation and client id)."""
    return {"sender": str(sender), "burst": per_minute, "per_second": per_minute / 60.0}


def after_taking(per_minute: int, tokens: float) -> Allowance:
    return Allowance(per_minute, max(0, math.floor(tokens)))


def held(sender: ProfileId, per_minute: int) -> Allowance:
    """What the sender's bucket holds now, taking nothing (a free retry's headers)."""
    tokens = _tokens(sender, per_minute)
    return Allowance(per_minute, max(0, math.floor(tokens)))


def refused(sender: ProfileId, per_minute: int) -> Allowance:
    """The allowance of a send just refused: nothing remaining, and when one message fits.

    Read in a statement after the refusal, the bucket may have refilled past one message in
    between (staff gain one every 0.1 s): the answer is then "retry in 1 s", never a success
    that was not given."""
    tokens = _tokens(sender, per_minute)
    wait = math.ceil((1 - tokens) * 60 / per_minute) if tokens < 1 else 1
    return Allowance(per_minute, 0, retry_after_s=max(1, wait))


def _tokens(sender: ProfileId, per_minute: int) -> float:
    held_sql = backend.pick(sqlite=HELD[True], postgresql=HELD[False])
    rows = database.execute_sql(held_sql, parameters(sender, per_minute)).fetchall()
    return float(per_minute) if not rows else float(rows[0][0])
