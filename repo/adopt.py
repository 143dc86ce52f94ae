"""`helpline db adopt`: bring an existing PostgreSQL database (the seed's old shape) under Helpline.

Every step is idempotent and reported, and none holds a long exclusive lock: the foreign key is
added NOT VALID and validated after the repair; the unique constraint is built CONCURRENTLY and
attached with USING INDEX. If orphans without a users row remain, adoption stops before
validating and changes nothing else. It holds a session (an advisory lock, a session
lock_timeout), so DATABASE_URL must reach PostgreSQL directly, never a transaction-mode pooler.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import psycopg2.errors
from yoyo import get_backend, read_migrations

from repo.checks import FOREIGN_KEY, PROFILE_TRIGGER, UNIQUE_CUSTOMER
from repo.config import DatabaseSettings
from repo.database import close_database, open_database
from repo.errors import InvalidInput
from repo.integrity import DEFAULT_BATCH_SIZE, repair_orphaned_conversations
from repo.migrate import MIGRATIONS_DIR, migrate, migrations_path, yoyo_url
from repo.pool import postgres_connect_kwargs
from repo.views import OrphanedConversation

TABLES = ("users", "profiles", "conversations", "messages")
CORE_MIGRATION = "0001_core"
LOCK_TIMEOUT = "5s"
DONE, ALREADY, STOPPED = "done", "already", "stopped"


@dataclass(frozen=True, slots=True)
class CoreObjects:
    """What adoption installs, read from the migrations themselves (their one source): the
    trigger and indexes of the core migration, and the trigger's function as the latest
    migration that defines it has it (0008 put caps on a profile's text)."""

    trigger_function: str  # CREATE OR REPLACE FUNCTION users_create_profile() ...
    trigger: str  # CREATE TRIGGER users_create_profile ...
    indexes: dict[str, str]  # index name -> "table (columns) [WHERE ...]"

    @classmethod
    @functools.cache
    def of_migrations(cls) -> CoreObjects:
        directory = MIGRATIONS_DIR / "postgresql"
        core = (directory / f"{CORE_MIGRATION}.sql").read_text()
        defining = rf"CREATE (?:OR REPLACE )?FUNCTION {PROFILE_TRIGGER}\(\).*?\$\$;"
        functions = [
            found.group(0)
            for path in sorted(directory.glob("*.sql"))
            if (found := re.search(defining, path.read_text(), flags=re.DOTALL))
        ]
        trigger = re.search(rf"CREATE TRIGGER {PROFILE_TRIGGER}\b.*?;", core, flags=re.DOTALL)
        if not functions or trigger is None:
            raise RuntimeError(f"the migrations no longer define {PROFILE_TRIGGER}")
        return cls(
            trigger_function=functions[-1]
            .removesuffix(";")
            .replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1),
            trigger=trigger.group(0).removesuffix(";"),
            indexes=dict(re.findall(r"^CREATE INDEX (\w+) ON (.+?);$", core, flags=re.MULTILINE)),
        )


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    status: str
    detail: str


@dataclass
class Adoption:
    steps: list[Step] = field(default_factory=list)
    unrepairable: list[OrphanedConversation] = field(default_factory=list)
    unrepairable_total: int = 0

    @property
    def complete(self) -> bool:
        return not any(step.status == STOPPED for step in self.steps)


_HAS_OPEN_COUNT = (
    "SELECT EXISTS (SELECT 1 FROM information_schema.columns "
    "WHERE table_name = 'admin_conversation_counts' AND column_name = 'open_count')"
)


def adopt(
    settings: DatabaseSettings,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    report: Callable[[Step], None] = lambda step: None,
) -> Adoption:
    """Run every adoption step in order, reporting each; stop early when it is unsafe to go on."""
    if settings.is_sqlite:
        raise InvalidInput("db adopt is for PostgreSQL; a SQLite database is created by db migrate")
    result = Adoption()

    def step(name: str, status: str, detail: str) -> None:
        result.steps.append(Step(name, status, detail))
        report(result.steps[-1])

    with _autocommit(settings) as sql:
        missing = [t for t in TABLES if sql("SELECT to_regclass(%s)", (t,))[0][0] is None]
        if missing:
            raise InvalidInput(
                f"tables missing: {', '.join(missing)}; on a new database run `helpline db migrate`"
            )
        if not sql("SELECT pg_try_advisory_lock(hashtext('helpline db adopt'))")[0][0]:
            step("take the adoption lock", STOPPED, "another `helpline db adopt` is running")
            return result
        sql(f"SET lock_timeout = '{LOCK_TIMEOUT}'")  # DDL never queues behind long work
        try:
            if not _adopt_schema(settings, sql, step, result, batch_size):
                return result
        except psycopg2.errors.LockNotAvailable:
            step(
                "wait for a lock",
                STOPPED,
                f"a transaction held a lock for over {LOCK_TIMEOUT} "
                "(a long report or backup?); rerun later: every step is idempotent",
            )
            return result
    _record_migrations(settings, step)
    return result


def _adopt_schema(
    settings: DatabaseSettings,
    sql: Callable[..., list[Any]],
    step: Callable[..., None],
    result: Adoption,
    batch_size: int,
) -> bool:
    """The steps in order; False when one stopped."""
    _add_foreign_key_not_valid(sql, step)
    _repair(settings, batch_size, step, result)
    if result.unrepairable:
        listed = ", ".join(f"{o.id} (customer {o.customer_id})" for o in result.unrepairable)
        more = result.unrepairable_total - len(result.unrepairable)
        step(
            "validate " + FOREIGN_KEY,
            STOPPED,
            f"{result.unrepairable_total} orphan(s) whose customer has no users row remain: "
            f"{listed}{f' and {more} more' if more else ''}. Give each customer a users row "
            "(or remove the conversation yourself), then rerun; nothing else changed",
        )
        return False
    _validate_foreign_key(sql, step)
    _merge_duplicate_conversations(sql, step)
    if not _add_unique_constraint(sql, step):
        return False
    _add_trigger(sql, step)
    _add_indexes(sql, step)
    return True


def _patiently(sql: Callable[..., list[Any]], statement: str) -> None:
    """Run a statement that only takes weak locks, waiting as long as old transactions need."""
    sql("SET lock_timeout = 0")
    try:
        sql(statement)
    finally:
        sql(f"SET lock_timeout = '{LOCK_TIMEOUT}'")


@contextmanager
def _autocommit(settings: DatabaseSettings) -> Iterator[Callable[..., list[Any]]]:
    """A statement runner on its own autocommit connection (CONCURRENTLY needs one)."""
    conn = psycopg2.connect(**postgres_connect_kwargs(settings.database_url))
    conn.autocommit = True

    def sql(statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with conn.cursor() as cursor:
            cursor.execute(statement, params)
            return list(cursor.fetchall()) if cursor.description else []

    try:
        yield sql
    finally:
        conn.close()


def _constraint_state(sql: Callable[..., list[Any]], name: str) -> bool | None:
    """None when absent, else whether it is validated."""
    rows = sql(
        "SELECT convalidated FROM pg_constraint "
        "WHERE conname = %s AND conrelid = 'conversations'::regclass",
        (name,),
    )
    return None if not rows else bool(rows[0][0])


def _add_foreign_key_not_valid(sql: Callable[..., list[Any]], step: Callable[..., None]) -> None:
    name = f"add {FOREIGN_KEY} NOT VALID"
    if _constraint_state(sql, FOREIGN_KEY) is not None:
        step(name, ALREADY, "the foreign key exists")
        return
    sql(
        f"ALTER TABLE conversations ADD CONSTRAINT {FOREIGN_KEY} "
        "FOREIGN KEY (customer_id) REFERENCES profiles (id) NOT VALID"
    )
    step(name, DONE, "new conversations are checked from now on; old rows are checked below")


def _repair(
    settings: DatabaseSettings, batch_size: int, step: Callable[..., None], result: Adoption
) -> None:
    open_database(settings)
    try:
        report = repair_orphaned_conversations(dry_run=False, batch_size=batch_size)
    finally:
        close_database()
    result.unrepairable = report.unrepairable
    result.unrepairable_total = report.orphaned_conversations_after
    status = DONE if report.profiles_created else ALREADY
    step(
        "repair orphaned conversations",
        status,
        f"{report.profiles_created} profile(s) created; orphans "
        f"{report.orphaned_conversations_before} -> {report.orphaned_conversations_after}",
    )


def _validate_foreign_key(sql: Callable[..., list[Any]], step: Callable[..., None]) -> None:
    name = f"validate {FOREIGN_KEY}"
    if _constraint_state(sql, FOREIGN_KEY):
        step(name, ALREADY, "validated")
        return
    _patiently(sql, f"ALTER TABLE conversations VALIDATE CONSTRAINT {FOREIGN_KEY}")
    step(name, DONE, "every conversation's customer has a profile")


def _merge_duplicate_conversations(
    sql: Callable[..., list[Any]], step: Callable[..., None]
) -> None:
    """Keep each customer's oldest conversation; move the others' messages into it."""
    customers = sql(
        "SELECT customer_id FROM conversations GROUP BY customer_id HAVING COUNT(*) > 1"
    )
    merged = []
    for (customer_id,) in customers:
        sql("BEGIN")
        try:
            ids = [
                str(row[0])
                for row in sql(
                    "SELECT id FROM conversations WHERE customer_id = %s "
                    "ORDER BY created_at, id FOR UPDATE",
                    (customer_id,),
                )
            ]
            keep, others = ids[0], ids[1:]
            sql(
                "UPDATE messages SET conversation_id = %s WHERE conversation_id = ANY(%s::uuid[])",
                (keep, others),
            )
            sql(
                "UPDATE conversations c SET last_message_at = m.latest, "
                "updated_at = GREATEST(c.updated_at, m.latest) "
                "FROM (SELECT max(created_at) AS latest FROM messages "
                "WHERE conversation_id = %s) m "
                "WHERE c.id = %s AND m.latest IS NOT NULL",
                (keep, keep),
            )
            if sql("SELECT to_regclass('admin_conversation_counts')")[0][0] is not None:
                sql(  # the merged-away conversations leave their admins' counts too
                    "UPDATE admin_conversation_counts a "
                    "SET conversation_count = GREATEST(a.conversation_count - d.held, 0) "
                    "FROM (SELECT admin_id, count(*) AS held FROM conversations "
                    "WHERE id = ANY(%s::uuid[]) GROUP BY admin_id) d WHERE a.admin_id = d.admin_id",
                    (others,),
                )
                if sql(_HAS_OPEN_COUNT)[0][0]:  # a database of the life-cycle release
                    sql(
                        "UPDATE admin_conversation_counts a "
                        "SET open_count = GREATEST(a.open_count - d.held, 0) "
                        "FROM (SELECT admin_id, count(*) AS held FROM conversations "
                        "WHERE id = ANY(%s::uuid[]) AND status = 'OPEN' GROUP BY admin_id) d "
                        "WHERE a.admin_id = d.admin_id",
                        (others,),
                    )
            sql("DELETE FROM conversations WHERE id = ANY(%s::uuid[])", (others,))
            sql("COMMIT")
        except BaseException:
            sql("ROLLBACK")
            raise
        merged.append(f"customer {customer_id}: kept {keep}, merged {', '.join(others)}")
    if merged:
        step("merge duplicate conversations", DONE, "; ".join(merged))
    else:
        step("merge duplicate conversations", ALREADY, "no customer has two conversations")


def _add_unique_constraint(sql: Callable[..., list[Any]], step: Callable[..., None]) -> bool:
    name = f"add {UNIQUE_CUSTOMER}"
    if _constraint_state(sql, UNIQUE_CUSTOMER) is not None:
        step(name, ALREADY, "the unique constraint exists")
        return True
    invalid = sql(
        "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = %s AND NOT i.indisvalid",
        (UNIQUE_CUSTOMER,),
    )
    if invalid:  # left by an interrupted CREATE INDEX CONCURRENTLY
        sql(f"DROP INDEX CONCURRENTLY IF EXISTS {UNIQUE_CUSTOMER}")
    try:
        _patiently(
            sql,
            f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {UNIQUE_CUSTOMER} "
            "ON conversations (customer_id)",
        )
    except psycopg2.errors.UniqueViolation:
        sql(f"DROP INDEX CONCURRENTLY IF EXISTS {UNIQUE_CUSTOMER}")
        step(
            name,
            STOPPED,
            "a duplicate conversation appeared while the index was built "
            "(is an old app version still writing?); rerun adopt",
        )
        return False
    sql(
        f"ALTER TABLE conversations ADD CONSTRAINT {UNIQUE_CUSTOMER} "
        f"UNIQUE USING INDEX {UNIQUE_CUSTOMER}"
    )
    step(name, DONE, "built concurrently and attached")
    return True


def _add_trigger(sql: Callable[..., list[Any]], step: Callable[..., None]) -> None:
    name = f"add trigger {PROFILE_TRIGGER}"
    exists = sql(
        "SELECT tgenabled <> 'D' FROM pg_trigger WHERE tgname = %s AND tgrelid = 'users'::regclass",
        (PROFILE_TRIGGER,),
    )
    if exists and exists[0][0]:
        step(name, ALREADY, "new users get a profile")
        return
    if exists:
        sql(f"ALTER TABLE users ENABLE TRIGGER {PROFILE_TRIGGER}")
        step(name, DONE, "the trigger was disabled; enabled")
        return
    core = CoreObjects.of_migrations()
    sql(core.trigger_function)
    sql(core.trigger)
    step(name, DONE, "new users get a profile in the same transaction")


def _add_indexes(sql: Callable[..., list[Any]], step: Callable[..., None]) -> None:
    indexes = CoreObjects.of_migrations().indexes
    missing = [n for n in indexes if sql("SELECT to_regclass(%s)", (n,))[0][0] is None]
    for index in missing:
        _patiently(sql, f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {index} ON {indexes[index]}")
    step(
        "add indexes",
        DONE if missing else ALREADY,
        f"created {', '.join(missing)}" if missing else "all present",
    )


def _record_migrations(settings: DatabaseSettings, step: Callable[..., None]) -> None:
    """Record the core migration as applied (adoption did its work), then apply any later one."""
    backend = get_backend(yoyo_url(settings.database_url))
    core = read_migrations(str(migrations_path(settings))).filter(
        lambda migration: migration.id == CORE_MIGRATION
    )
    with backend.lock():
        unmarked = backend.to_apply(core)
        backend.mark_migrations(unmarked)
    later = migrate(settings)
    done = [*(m.id for m in unmarked), *later]
    step(
        "record migrations",
        DONE if done else ALREADY,
        f"recorded {', '.join(done)}" if done else "up to date",
    )
