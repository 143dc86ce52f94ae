"""What each sender's allowance (issue #25) costs the hot send, on PostgreSQL.

The same send, ``repo.messages.send_message`` as each conversation's customer, by concurrent
senders (threads, each its own customer and conversation, the repository's own pool), with the
allowance taken (``limits`` so high it never refuses: the statement with the bucket folded into
it) and without (``limits=None``: the statement as it was before). Rounds alternate the two,
order flipped each round, on one database of this run's own; each figure is the median round.

    python -m bench.allowance [--senders 8] [--seconds 5] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from datetime import UTC, datetime

from bench.common import (
    ROOT,
    add_admin,
    add_customers_with_conversations,
    bench_database,
    machine,
    run_and_write,
    seeding,
)
from repo.allowance import SendLimits
from repo.ids import ConversationId, ProfileId
from repo.messages import send_message

TITLE = "## Issue #25: what the sender's allowance costs a send"
NEVER_REFUSES = SendLimits(10**9, 10**9)


def sends_per_second(
    pairs: list[tuple[ProfileId, ConversationId]], limits: SendLimits | None, seconds: float
) -> float:
    """Sends completed per second by one thread per (customer, conversation)."""
    done = [0] * len(pairs)
    until = time.monotonic() + seconds

    def sender(index: int) -> None:
        customer, conversation = pairs[index]
        while time.monotonic() < until:
            send_message(conversation, "bench", sender_id=customer, limits=limits)
            done[index] += 1

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(len(pairs))]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.monotonic() - started)


def run(args: argparse.Namespace) -> str:
    with bench_database("bench_allowance") as url, seeding(url):
        add_admin("admin@example.com", "Admin")
        pairs = [
            (ProfileId(customer), ConversationId(conversation))
            for customer, conversation in add_customers_with_conversations(args.senders, "Hi")
        ]
        sends_per_second(pairs, NEVER_REFUSES, 1.0)  # warm the pool and the plans
        with_allowance: list[float] = []
        without: list[float] = []
        for round_ in range(args.rounds):
            contenders = [(with_allowance, NEVER_REFUSES), (without, None)]
            for figures, limits in contenders if round_ % 2 else reversed(contenders):
                figures.append(sends_per_second(pairs, limits, args.seconds))
    taken, plain = statistics.median(with_allowance), statistics.median(without)
    return "\n".join(
        [
            TITLE,
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}, by `python -m "
            f"bench.allowance --senders {args.senders} --seconds {args.seconds} --rounds "
            f"{args.rounds}`: `repo.messages.send_message` as each conversation's customer, "
            f"{args.senders} threads at once (each its own customer), PostgreSQL on loopback; "
            "rounds alternate the two, order flipped each round; the median round.",
            "",
            "| the send | sends/s (median) | rounds |",
            "|---|---|---|",
            f"| without the allowance (the statement before) | {plain:,.0f} | "
            + ", ".join(f"{v:,.0f}" for v in without)
            + " |",
            f"| taking from the sender's allowance (folded into the statement) | {taken:,.0f} | "
            + ", ".join(f"{v:,.0f}" for v in with_allowance)
            + " |",
            "",
            f"Ratio with / without: **{taken / plain:.2f}**. The bucket is an upsert of one row "
            "of an `UNLOGGED` table inside the statement that stores the message, so it adds no "
            "round trip and no WAL; what it adds is that row's lock, held to the send's commit "
            "(a sender's sends in different conversations queue behind each other).",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    return run_and_write(lambda: run(args), ROOT / "BENCHMARKS.md")


if __name__ == "__main__":
    sys.exit(main())
