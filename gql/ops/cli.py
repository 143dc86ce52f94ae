"""The `helpline` command: integrity checks and repair, database migration and adoption, admins,
the demo data, and the server.

Exit codes: 0 all is well, 1 something is wrong in the data (or a step stopped), 2 the command
could not run (bad settings, database unreachable).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import resource
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from tqdm import tqdm

from gql.http.settings import Settings
from gql.http.transport import http_protocol
from gql.observability.logs import LOG_CONFIG
from repo import admins, checks
from repo.adopt import STOPPED, Step, adopt
from repo.config import ConfigError
from repo.database import close_database, open_database, sqlite_path
from repo.demo import DEMO_USERS, seed_demo_data
from repo.errors import (
    AdminHoldsConversations,
    DatabaseRefused,
    DatabaseUnavailable,
    HelplineError,
)
from repo.integrity import (
    DEFAULT_BATCH_SIZE,
    recount_admin_conversations,
    repair_orphaned_conversations,
)
from repo.migrate import migrate, report_applied
from repo.units import command_errors, first_line
from repo.views import RepairReport

OK, FOUND, CANNOT_RUN = 0, 1, 2
log = logging.getLogger("helpline.cli")


class CannotRun(Exception):
    """The command could not run; exit 2 with this message."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        settings = Settings.from_env()
        with command_errors():
            return int(args.run(settings, args))
    except (ConfigError, CannotRun) as exc:
        print(f"helpline: {exc}", file=sys.stderr)
        return CANNOT_RUN
    except DatabaseUnavailable as exc:
        print(f"helpline: database unavailable: {first_line(exc)}", file=sys.stderr)
        return CANNOT_RUN
    except DatabaseRefused as exc:
        hint = "; is the schema there? (helpline db migrate, or db adopt)" if exc.no_schema else ""
        print(f"helpline: the database refused: {first_line(exc)}{hint}", file=sys.stderr)
        return CANNOT_RUN


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="helpline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    groups = parser.add_subparsers(dest="group", required=True)

    integrity = groups.add_parser("integrity", help="check and repair the data").add_subparsers(
        dest="command", required=True
    )
    check = integrity.add_parser("check", help="run every check (exit 1 on a violation)")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument(
        "--strict", action="store_true", help="users without a profile fail the check too"
    )
    check.set_defaults(run=_integrity_check)
    repair = integrity.add_parser("repair", help="create missing profiles (dry run by default)")
    repair.add_argument("--apply", action="store_true", help="write; without it nothing changes")
    repair.add_argument("--batch-size", type=_positive, default=DEFAULT_BATCH_SIZE, metavar="N")
    repair.set_defaults(run=_integrity_repair)

    db = groups.add_parser("db", help="schema").add_subparsers(dest="command", required=True)
    db.add_parser("migrate", help="apply pending migrations").set_defaults(run=_db_migrate)
    adopt_cmd = db.add_parser("adopt", help="bring an existing PostgreSQL database under Helpline")
    adopt_cmd.add_argument("--batch-size", type=_positive, default=DEFAULT_BATCH_SIZE, metavar="N")
    adopt_cmd.set_defaults(run=_db_adopt)

    admin = groups.add_parser("admin", help="admins").add_subparsers(dest="command", required=True)
    add = admin.add_parser("add", help="make the user with this email an admin")
    add.add_argument("email")
    add.set_defaults(run=_admin_add)
    listing = admin.add_parser("list", help="every admin, online or not, with their conversations")
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    listing.set_defaults(run=_admin_list)
    remove = admin.add_parser("remove", help="take admin rights from the user with this email")
    remove.add_argument("email")
    remove.add_argument(
        "--reassign",
        action="store_true",
        help="hand their conversations to the other admins first (by the assignment rule)",
    )
    remove.add_argument("--batch-size", type=_positive, default=DEFAULT_BATCH_SIZE, metavar="N")
    remove.set_defaults(run=_admin_remove)

    demo = groups.add_parser("demo", help="the demo data").add_subparsers(
        dest="command", required=True
    )
    demo.add_parser(
        "seed", help="migrate, then add the demo users once (what `make run` runs first)"
    ).set_defaults(run=_demo_seed)

    serve = groups.add_parser("serve", help="serve the API with uvicorn")
    serve.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000))
    serve.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="uvicorn worker processes (default: WEB_CONCURRENCY, else 1)",
    )
    serve.set_defaults(run=_serve)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


@contextmanager
def _database(settings: Settings) -> Iterator[None]:
    """The repository bound to the configured database; unreachable means exit 2."""
    database = settings.database
    if database.is_sqlite and not Path(sqlite_path(database.database_url)).exists():
        raise CannotRun(
            f"no database at {sqlite_path(database.database_url)}: run helpline db migrate"
        )
    # An operator's command scans whole tables (a check, a repair of millions of rows): the
    # web server's statement timeout is not for it; lock waits stay bounded.
    open_database(dataclasses.replace(database, db_statement_timeout_ms=0))
    try:
        yield
    except DatabaseUnavailable as exc:
        raise CannotRun(f"database unavailable: {first_line(exc.__cause__ or exc)}") from exc
    finally:
        close_database()


def _integrity_check(settings: Settings, args: argparse.Namespace) -> int:
    with _database(settings):
        results = checks.run_checks(strict=args.strict)
    failed = any(c.status == checks.VIOLATION for c in results)
    if args.json:
        print(json.dumps({"ok": not failed, "checks": [c.as_dict() for c in results]}, indent=2))
    else:
        for c in results:
            print(f"{c.status.upper():9} {c.name}: {c.summary}")
            for item in c.sample:
                print(f"          - {item}")
        print("FAILED: invariants are violated" if failed else "OK: every invariant holds")
    return FOUND if failed else OK


def _integrity_repair(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 when nothing is left to repair, 1 when something is (a dry run with work to do,
    orphans without a users row, counts still off), 2 when it could not run."""
    with _database(settings), _progress(enabled=args.apply) as progress:
        report = repair_orphaned_conversations(
            dry_run=not args.apply, batch_size=args.batch_size, progress=progress
        )
        counts_before, counts_after = recount_admin_conversations(
            dry_run=not args.apply, batch_size=args.batch_size
        )
    _print_repair(report)
    if report.dry_run:
        print(f"admins whose conversation count differs: {counts_before} (would recount)")
    else:
        print(
            f"admins whose conversation count differs: {counts_before} before, {counts_after} after"
        )
    left = (
        report.orphaned_conversations_before
        if report.dry_run
        else report.orphaned_conversations_after
    )
    return FOUND if left or counts_after else OK


@contextmanager
def _progress(*, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A tqdm bar on a terminal, one log line per batch otherwise."""
    if enabled and sys.stderr.isatty():
        with tqdm(unit="customer", desc="repairing", file=sys.stderr) as bar:
            yield bar.update
        return
    done = 0

    def log_batch(count: int) -> None:
        nonlocal done
        done += count
        log.info("repaired a batch of %d customer(s); %d so far", count, done)

    yield log_batch


def _print_repair(report: RepairReport) -> None:
    verb = "would create" if report.dry_run else "created"
    print(f"{'DRY RUN: ' if report.dry_run else ''}{verb} {report.profiles_created} profile(s)")
    print(
        f"orphaned conversations: {report.orphaned_conversations_before} before, "
        f"{report.orphaned_conversations_after} after"
    )
    for orphan in report.unrepairable:
        print(f"cannot heal {orphan.id}: customer {orphan.customer_id} has no users row")
    if report.dry_run:
        print("nothing was written; rerun with --apply to repair")


def _db_migrate(settings: Settings, args: argparse.Namespace) -> int:
    try:
        with command_errors():
            applied = _guarded(lambda: migrate(settings.database))
    except DatabaseRefused as exc:
        if not exc.foreign_schema:
            raise
        raise CannotRun(
            "the tables exist but were not created by Helpline: run `helpline db adopt`"
        ) from exc
    report_applied(applied)
    return OK


def _demo_seed(settings: Settings, args: argparse.Namespace) -> int:
    _db_migrate(settings, args)
    with _database(settings):
        inserted = seed_demo_data()
    print(f"demo data: {len(inserted)} user(s) added" if inserted else "demo data: present")
    for user in DEMO_USERS:
        print(f"  {user.role:40} {user.id}  {user.email}")
    return OK


def _db_adopt(settings: Settings, args: argparse.Namespace) -> int:
    def report(step: Step) -> None:
        print(f"{step.status.upper():8} {step.name}: {step.detail}")

    result = _guarded(lambda: adopt(settings.database, batch_size=args.batch_size, report=report))
    if result.complete:
        print("adopted: run `helpline integrity check` to confirm")
        return OK
    print("stopped: fix what the stopped step says, then rerun `helpline db adopt`")
    return FOUND if any(s.status == STOPPED for s in result.steps) else OK


def _admin_add(settings: Settings, args: argparse.Namespace) -> int:
    with _database(settings):
        try:
            profile = admins.make_admin(args.email)
        except (DatabaseUnavailable, DatabaseRefused):
            raise  # could not run: exit 2
        except HelplineError as exc:
            print(f"helpline: {exc}", file=sys.stderr)
            return FOUND
    print(f"{profile.name} ({args.email}, {profile.id}) is an admin")
    return OK


def _admin_list(settings: Settings, args: argparse.Namespace) -> int:
    with _database(settings):
        team = admins.list_admins()
    if args.json:
        rows = [
            {
                "id": str(a.id),
                "email": a.email,
                "name": a.name,
                "online": a.is_online,
                "assignedConversationCount": a.assigned_conversation_count,
            }
            for a in team
        ]
        print(json.dumps({"admins": rows}))
        return OK
    for a in team:
        presence = "online " if a.is_online else "offline"
        print(f"{presence}  {a.assigned_conversation_count:6}  {a.email}  {a.id}  {a.name}")
    print(f"{len(team)} admin(s)")
    return OK


def _admin_remove(settings: Settings, args: argparse.Namespace) -> int:
    def progress(moved: int) -> None:
        print(f"handed over {moved} conversation(s)", flush=True)

    with _database(settings):
        try:
            moved = admins.remove_admin(
                args.email, reassign=args.reassign, batch_size=args.batch_size, progress=progress
            )
        except (DatabaseUnavailable, DatabaseRefused):
            raise  # could not run: exit 2
        except AdminHoldsConversations as exc:
            print(
                f"helpline: {args.email} {exc}: rerun with --reassign to hand them over",
                file=sys.stderr,
            )
            return FOUND
        except HelplineError as exc:  # no such user, the last admin
            print(f"helpline: {exc}", file=sys.stderr)
            return FOUND
    print(f"{args.email} is not an admin (handed over {moved} conversation(s))")
    return OK


def _guarded(run: Callable[[], Any]) -> Any:
    """Run a command that opens its own connections; connection failures mean exit 2."""
    try:
        return run()
    except DatabaseUnavailable as exc:
        raise CannotRun(f"database unavailable: {first_line(exc)}") from exc
    except HelplineError as exc:
        raise CannotRun(str(exc)) from exc


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    settings.validate_serving()
    workers = args.workers or settings.http.web_concurrency
    if workers > 1 and settings.database.is_sqlite:
        raise CannotRun("--workers: SQLite serves one process; use PostgreSQL for more workers")
    _open_files_for(settings)
    made_dir = None
    if workers > 1:
        # Workers write their metrics here so /metrics in any of them adds up all of them;
        # files left by an earlier run would count dead processes, so start empty.
        metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if metrics_dir:
            for stale in Path(metrics_dir).glob("*.db"):
                stale.unlink()
        else:
            made_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
                prefix="helpline-metrics-"
            )
    uvicorn.run(
        "gql.http.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=workers,
        log_config=LOG_CONFIG,
        access_log=False,
        proxy_headers=True,
        ws_max_size=settings.http.max_body_bytes,  # a socket's message: as an HTTP body
        # off unless asked: each compressing socket keeps about 40 KiB of zlib state, for
        # frames of a few hundred bytes (README, "WebSocket compression")
        ws_per_message_deflate=settings.ws.ws_per_message_deflate,
        # httptools with bounds on heads, slow clients and idle connections (MAX_CONNECTIONS);
        # the app sheds requests in flight itself (MAX_CONCURRENT_REQUESTS), so uvicorn's
        # limit_concurrency, which counts idle connections too, stays off.
        http=http_protocol(settings.http),
        # SIGTERM: stop accepting, let requests in flight finish for this long, then close.
        timeout_graceful_shutdown=settings.http.shutdown_timeout_s,
    )
    if made_dir:
        shutil.rmtree(made_dir, ignore_errors=True)
    return OK


def _open_files_for(settings: Settings) -> None:
    """Raise this process's soft open-file limit (its workers inherit it) to hold
    MAX_CONNECTIONS and the database pools, or stop: at the limit, accept() would fail first and
    turn every caller away, probes too."""
    connections = settings.http.max_connections
    needed = connections + 2 * settings.database.db_pool_size + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise CannotRun(
            f"MAX_CONNECTIONS: {connections} connections and the database pools "
            f"need {needed} open files, above this process's hard limit of {hard} "
            "(ulimit -Hn): lower MAX_CONNECTIONS or raise the limit"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


if __name__ == "__main__":
    sys.exit(main())
