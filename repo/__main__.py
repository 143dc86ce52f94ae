"""Operator commands: `python -m repo migrate` and `python -m repo seed-demo`."""

from __future__ import annotations

import argparse
import logging
import sys

from repo.config import ConfigError, Settings
from repo.database import close_database, open_database
from repo.demo import DEMO_USERS, seed_demo_data
from repo.migrate import migrate, report_applied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m repo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply pending database migrations (idempotent)")
    commands.add_parser("seed-demo", help="migrate, then add the demo users once")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report_applied(migrate(settings))
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


if __name__ == "__main__":
    sys.exit(main())
