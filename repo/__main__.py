"""Operator commands: `python -m repo migrate`, `seed-demo` and `examples`."""

from __future__ import annotations

import argparse
import logging
import sys

from repo.config import ConfigError, Settings
from repo.db import close_database, open_database
from repo.demo import CUSTOMER, DEMO_USERS, LEGACY_CUSTOMER, seed_demo_data
from repo.migrate import migrate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m repo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply pending database migrations (idempotent)")
    commands.add_parser("seed-demo", help="migrate, then add the demo users once")
    examples = commands.add_parser("examples", help="print example operations for the demo data")
    examples.add_argument("--url", default="http://127.0.0.1:8000/graphql")
    args = parser.parse_args(argv)
    if args.command == "examples":
        print(example_operations(args.url))
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    applied = migrate(settings)
    print(f"migrations: {', '.join(applied) if applied else 'up to date'}")
    if args.command == "seed-demo":
        open_database(settings)
        try:
            inserted = seed_demo_data()
        finally:
            close_database()
        print(f"demo data: {len(inserted)} user(s) added" if inserted else "demo data: present")
        for user in DEMO_USERS:
            print(f"  {user.role:40} {user.id}  {user.email}")
    return 0


def example_operations(url: str) -> str:
    customer, legacy = CUSTOMER.id, LEGACY_CUSTOMER.id
    get_or_create = (
        'mutation { adminConversation(customerId: \\"%s\\") '
        "{ created profileCreated conversation { id admin { name } "
        "messages(first: 5) { edges { node { content sender { name } } } } } } }"
    )
    return "\n".join(
        [
            f"GraphiQL playground: {url}",
            "Try it from a shell:",
            f"  curl -s {url} -H 'content-type: application/json' \\",
            f'    -d \'{{"query": "{get_or_create % customer}"}}\'',
            "The legacy customer has no profile yet; the same call creates it:",
            f"  curl -s {url} -H 'content-type: application/json' \\",
            f'    -d \'{{"query": "{get_or_create % legacy}"}}\'',
            "Operators:",
            f"  curl -s {url} -H 'content-type: application/json' \\",
            '    -d \'{"query": "{ integrity { orphanedConversationCount '
            "profileCoverage { profileCoveragePercent } } }\"}'",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
