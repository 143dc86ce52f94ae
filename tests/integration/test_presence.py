"""Admins are online while any live server process holds a socket for them."""

from __future__ import annotations

import threading
import time
from uuid import uuid4

import pytest

from repo import presence
from repo.database import database
from repo.ids import ProfileId
from repo.models import Presence, Profile
from tests.factories import make_admin

pytestmark = pytest.mark.usefixtures("db")
TTL_S = 60.0


def is_online(profile: ProfileId) -> bool:
    with database.connection_context():
        return bool(Profile.get_by_id(profile).is_online)


def test_an_admin_stays_online_until_the_last_socket_on_any_process_closes() -> None:
    admin = make_admin()
    worker_a, worker_b = uuid4(), uuid4()
    presence.record(worker_a, admin, 1)
    presence.record(worker_b, admin, 2)

    presence.record(worker_a, admin, 0)
    assert is_online(admin)  # worker b still holds two sockets
    presence.record(worker_b, admin, 1)
    assert is_online(admin)
    presence.record(worker_b, admin, 0)
    assert not is_online(admin)
    with database.connection_context():
        assert Presence.select().count() == 0


def test_a_crashed_process_s_admins_go_offline_when_its_rows_expire() -> None:
    admin, other = make_admin("On Crashed Worker"), make_admin("On Live Worker")
    crashed, live = uuid4(), uuid4()
    presence.record(crashed, admin, 1)
    presence.record(live, other, 1)
    time.sleep(0.05)  # the crashed worker's last beat is now in the past

    assert presence.heartbeat(live, {other: 1}, ttl_s=TTL_S) == 0  # not silent long enough
    assert is_online(admin)
    assert presence.heartbeat(live, {other: 1}, ttl_s=0.01) == 1
    assert (is_online(admin), is_online(other)) == (False, True)


def test_a_heartbeat_writes_the_process_s_sockets_as_they_are() -> None:
    admin, gone = make_admin("Still Here"), make_admin("Left While The Database Was Away")
    worker = uuid4()
    presence.record(worker, gone, 1)  # its leave never reached the database

    presence.heartbeat(worker, {admin: 2}, ttl_s=TTL_S)

    assert (is_online(admin), is_online(gone)) == (True, False)
    with database.connection_context():
        assert [(row.profile_id, row.sockets) for row in Presence.select()] == [(admin, 2)]


def test_a_deleted_profile_does_not_stop_the_heartbeat_for_the_others() -> None:
    admin, deleted = make_admin("Stays"), ProfileId(uuid4())  # no such profile (any more)
    worker = uuid4()

    presence.heartbeat(worker, {admin: 1, deleted: 1}, ttl_s=TTL_S)

    assert is_online(admin)


def test_a_stopping_process_takes_its_sockets_with_it() -> None:
    admin, elsewhere = make_admin("Here"), make_admin("Elsewhere")
    stopping, staying = uuid4(), uuid4()
    presence.record(stopping, admin, 1)
    presence.record(stopping, elsewhere, 1)
    presence.record(staying, elsewhere, 1)

    presence.depart(stopping)

    assert (is_online(admin), is_online(elsewhere)) == (False, True)


def test_heartbeats_and_socket_changes_of_many_processes_do_not_deadlock() -> None:
    admins = [make_admin(f"Admin {i}") for i in range(3)]
    workers = [uuid4() for _ in range(3)]
    failures: list[BaseException] = []

    def churn(worker: object, rounds: int) -> None:
        try:
            for i in range(rounds):
                for admin in admins:
                    presence.record(worker, admin, i % 2)  # type: ignore[arg-type]
        except BaseException as exc:
            failures.append(exc)

    def beat(worker: object, rounds: int) -> None:
        try:
            for _ in range(rounds):
                presence.heartbeat(worker, dict.fromkeys(admins, 1), ttl_s=TTL_S)  # type: ignore[arg-type]
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=churn, args=(w, 20)) for w in workers[:2]]
    threads.append(threading.Thread(target=beat, args=(workers[2], 30)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert failures == []
    assert all(is_online(admin) for admin in admins)  # the beating worker holds one each
