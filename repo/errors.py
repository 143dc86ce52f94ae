"""The repository's failures: one base class, one subclass per thing a caller can act on."""

from __future__ import annotations


class HelplineError(Exception):
    """Base class of every expected failure of a unit of work."""


class InvalidInput(HelplineError):
    """The caller's input breaks a rule (length, range, format); nothing was written."""


class CustomerNotFound(HelplineError):
    """No `users` row exists for the customer id; nothing was written."""


class NoAdminAvailable(HelplineError):
    """No admin profile can take the conversation; nothing was written."""


class ConversationNotFound(HelplineError):
    """The conversation does not exist."""


class ClientMessageIdReused(HelplineError):
    """The sender already used this client message id in the conversation for other content.

    Nothing was written; a new message needs a new id.
    """


class RateLimited(HelplineError):
    """The sender used up their allowance of messages (repo/allowance.py); nothing was stored.

    ``retry_after_s``: when the allowance holds one message again; ``limit``: a minute's worth.
    """

    def __init__(self, *, limit: int, retry_after_s: int) -> None:
        super().__init__(
            f"too many messages: at most {limit} a minute; try again in {retry_after_s} s"
        )
        self.limit = limit
        self.retry_after_s = retry_after_s


class DatabaseUnavailable(HelplineError):
    """The database could not be reached or was busy (locked, timed out, connection lost).

    Nothing was written; the same call can be retried.
    """


class IntegrityViolation(HelplineError):
    """A database constraint rejected a write the unit of work believed safe.

    Carries the constraint name so operators can find it in the logs; the
    client only ever sees a masked internal error.
    """

    def __init__(self, constraint: str | None, sqlstate: str | None) -> None:
        super().__init__(f"constraint {constraint or '?'} violated (SQLSTATE {sqlstate or '?'})")
        self.constraint = constraint
        self.sqlstate = sqlstate


class DatabaseRefused(HelplineError):
    """The database refused an operations command's statement (a command reports it, exit 2).

    ``no_schema``: a table is missing (the schema was never migrated); ``foreign_schema``: the
    tables exist but were not created by Helpline's migrations (adopt them instead).
    """

    def __init__(self, reason: str, *, no_schema: bool = False, foreign_schema: bool = False):
        super().__init__(reason)
        self.no_schema = no_schema
        self.foreign_schema = foreign_schema


class LastAdmin(HelplineError):
    """Removing this admin would leave no admin to take conversations; nothing was changed."""


class AdminHoldsConversations(HelplineError):
    """The admin still holds conversations; hand them over first (nothing was changed)."""

    def __init__(self, held: int) -> None:
        super().__init__(f"holds {held} conversation(s)")
        self.held = held
