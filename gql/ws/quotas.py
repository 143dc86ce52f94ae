"""Fair use of one process's WebSockets: per address before a socket says who it is, per
caller after.

- An address (the client address uvicorn reports: behind a proxy, with ``--proxy-headers``
  and ``FORWARDED_ALLOW_IPS``, the forwarded one) may hold WS_MAX_PENDING_PER_ADDRESS sockets
  that have not sent an accepted ``connection_init`` yet; each has WS_INIT_TIMEOUT_SECONDS.
- A caller (a customer's or an admin's token ``sub``) may hold WS_MAX_SOCKETS_PER_CALLER
  sockets and WS_MAX_SUBSCRIPTIONS_PER_CALLER subscriptions across them. ``service_role`` is a
  server's credential, not a person's: it is not counted.

Over a socket bound the socket is closed with 4429, which graphql-ws's client takes as fatal
(it does not retry into the same wall); over the subscription bound the subscribe gets a
``TOO_MANY_SUBSCRIPTIONS`` error and the socket stays. The counts are this process's: with
several workers a caller may hold up to that many times more (README, Limits).
"""

from __future__ import annotations

from collections.abc import Hashable, Sized
from dataclasses import dataclass, field

TOO_MANY = 4429
TOO_MANY_PENDING = "too many sockets not yet initialised from this address"
TOO_MANY_SOCKETS = "too many sockets for this caller"


@dataclass(eq=False)
class Ticket:
    """One socket's place in the counts: pending from its address until it says who it is,
    then its caller's (``operations``: its running subscriptions, which the counts read)."""

    address: str
    pending: bool = True
    caller: Hashable | None = None
    operations: Sized = field(default_factory=dict)


class Quotas:
    def __init__(
        self, *, pending_per_address: int, sockets_per_caller: int, subscriptions_per_caller: int
    ) -> None:
        self.pending_per_address = pending_per_address
        self.sockets_per_caller = sockets_per_caller
        self.subscriptions_per_caller = subscriptions_per_caller
        self.pending: dict[str, int] = {}
        self.callers: dict[Hashable, set[Ticket]] = {}

    def open(self, address: str) -> Ticket | None:
        """A new socket from ``address``; None when the address holds its bound of pending."""
        held = self.pending.get(address, 0)
        if held >= self.pending_per_address:
            return None
        self.pending[address] = held + 1
        return Ticket(address)

    def identify(self, ticket: Ticket, caller: Hashable | None, operations: Sized) -> bool:
        """The socket said who it is (None: a service credential, not counted); False when
        that caller already holds their bound of sockets (the socket is to be closed)."""
        self._unpend(ticket)
        if caller is None:
            return True
        sockets = self.callers.setdefault(caller, set())
        if len(sockets) >= self.sockets_per_caller:
            return False
        ticket.caller, ticket.operations = caller, operations
        sockets.add(ticket)
        return True

    def may_subscribe(self, ticket: Ticket) -> bool:
        """Whether the socket's caller may start one more subscription."""
        if ticket.caller is None:
            return True
        held = sum(len(t.operations) for t in self.callers.get(ticket.caller, ()))
        return held < self.subscriptions_per_caller

    def close(self, ticket: Ticket) -> None:
        self._unpend(ticket)
        if ticket.caller is not None:
            sockets = self.callers.get(ticket.caller, set())
            sockets.discard(ticket)
            if not sockets:
                self.callers.pop(ticket.caller, None)
            ticket.caller = None

    def _unpend(self, ticket: Ticket) -> None:
        if ticket.pending:
            ticket.pending = False
            left = self.pending[ticket.address] - 1
            if left:
                self.pending[ticket.address] = left
            else:
                del self.pending[ticket.address]
