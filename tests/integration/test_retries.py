"""A serialization failure or a deadlock runs the unit of work again; nothing else does."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from repo.backend import write_transaction
from repo.database import database, open_database
from repo.errors import DatabaseUnavailable, IntegrityViolation
from repo.ids import CustomerId
from repo.models import Profile
from repo.units import unit_of_work, unit_of_work_once
from tests.factories import make_user


def raising(
    sqlstate_name: str, calls: list[int], unit: Callable[..., Any] = unit_of_work
) -> Callable[[], None]:
    """A unit of work whose database raises ``sqlstate_name`` every time (a real error)."""

    @unit
    def work() -> None:
        calls.append(1)
        with write_transaction():
            database.execute_sql(
                "DO $$ BEGIN RAISE EXCEPTION 'forced by the test' "
                f"USING ERRCODE = '{sqlstate_name}'; END $$"
            )

    return work


@pytest.mark.parametrize("sqlstate_name", ["serialization_failure", "deadlock_detected"])
def test_a_transaction_that_keeps_failing_to_serialize_gives_up_as_unavailable(
    postgres: Any, sqlstate_name: str
) -> None:
    calls: list[int] = []

    with pytest.raises(DatabaseUnavailable):
        raising(sqlstate_name, calls)()

    assert len(calls) == postgres.database.db_retry_attempts == 3


def test_the_number_of_attempts_is_configurable(postgres: Any) -> None:
    open_database(postgres.replaced(db_retry_attempts=1).database)
    calls: list[int] = []

    with pytest.raises(DatabaseUnavailable):
        raising("deadlock_detected", calls)()

    assert len(calls) == 1


def test_other_errors_are_never_retried(postgres: Any) -> None:
    calls: list[int] = []
    customer = make_user()

    @unit_of_work
    def duplicate() -> None:
        calls.append(1)
        with write_transaction():
            Profile.insert(id=customer, name="twin").execute()  # the trigger made one already

    with pytest.raises(IntegrityViolation):
        duplicate()
    with pytest.raises(DatabaseUnavailable):
        raising("lock_not_available", calls)()  # a lock timeout: the client retries, not us

    assert len(calls) == 2


def test_a_real_deadlock_is_retried_and_both_transactions_complete(postgres: Any) -> None:
    first, second = make_user(), make_user()
    both_hold_one = threading.Barrier(2, timeout=10)
    attempts: list[str] = []
    done: list[str] = []

    @unit_of_work
    def rename_both(name: str, order: tuple[CustomerId, CustomerId]) -> None:
        attempts.append(name)
        with write_transaction():
            for i, profile in enumerate(order):
                Profile.update(name=name).where(Profile.id == profile).execute()
                if i == 0 and attempts.count(name) == 1:
                    both_hold_one.wait()  # each holds one row and wants the other: a deadlock
        done.append(name)

    threads = [
        threading.Thread(target=rename_both, args=("a", (first, second))),
        threading.Thread(target=rename_both, args=("b", (second, first))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(done) == ["a", "b"]  # PostgreSQL broke the deadlock; the victim ran again
    assert len(attempts) == 3
    names = {p.name for p in Profile.select().where(Profile.id.in_([first, second]))}
    assert len(names) == 1  # whichever committed last renamed both: no half of either


def test_a_deadlock_in_an_inner_unit_of_work_runs_the_outer_one_again(postgres: Any) -> None:
    outer_calls: list[int] = []
    inner_calls: list[int] = []
    failing = raising("deadlock_detected", inner_calls)

    @unit_of_work
    def outer() -> str:
        outer_calls.append(1)
        with write_transaction():
            if len(outer_calls) == 1:
                failing()  # inside the outer transaction: only the outer unit may retry
        return "done"

    assert outer() == "done"
    assert (len(outer_calls), len(inner_calls)) == (2, 1)


def test_a_unit_that_commits_as_it_goes_is_never_run_again(postgres: Any) -> None:
    calls: list[int] = []

    with pytest.raises(DatabaseUnavailable):
        raising("deadlock_detected", calls, unit_of_work_once)()

    assert len(calls) == 1  # a batched repair reports its one run; the operator reruns it
