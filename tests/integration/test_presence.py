"""Admins are online while any live server process holds a socket for them."""

from __future__ import annotations

import time
from uuid import uuid4

import pytest

from repo import presence
from repo.db import database
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
    presence.join(worker_a, admin)
    presence.join(worker_b, admin)
    presence.join(worker_b, admin)

    presence.leave(worker_a, admin)
    assert is_online(admin)  # worker b still holds two sockets
    presence.leave(worker_b, admin)
    assert is_online(admin)
    presence.leave(worker_b, admin)
    assert not is_online(admin)
    with database.connection_context():
        assert Presence.select().count() == 0


def test_a_crashed_process_s_admins_go_offline_when_its_rows_expire() -> None:
    admin, other = make_admin("On Crashed Worker"), make_admin("On Live Worker")
    crashed, live = uuid4(), uuid4()
    presence.join(crashed, admin)
    presence.join(live, other)
    time.sleep(0.05)  # the crashed worker's last beat is now in the past

    assert presence.heartbeat(live, {other: 1}, ttl_s=TTL_S) == 0  # not silent long enough
    assert is_online(admin)
    assert presence.heartbeat(live, {other: 1}, ttl_s=0.01) == 1
    assert (is_online(admin), is_online(other)) == (False, True)


def test_a_heartbeat_writes_the_process_s_sockets_as_they_are() -> None:
    admin, gone = make_admin("Still Here"), make_admin("Left While The Database Was Away")
    worker = uuid4()
    presence.join(worker, gone)  # its leave never reached the database

    presence.heartbeat(worker, {admin: 2}, ttl_s=TTL_S)

    assert (is_online(admin), is_online(gone)) == (True, False)
    presence.leave(worker, admin)
    assert is_online(admin)  # one of its two sockets is left
    with database.connection_context():
        assert Presence.get().sockets == 1


def test_a_stopping_process_takes_its_sockets_with_it() -> None:
    admin, elsewhere = make_admin("Here"), make_admin("Elsewhere")
    stopping, staying = uuid4(), uuid4()
    presence.join(stopping, admin)
    presence.join(stopping, elsewhere)
    presence.join(staying, elsewhere)

    presence.depart(stopping)

    assert (is_online(admin), is_online(elsewhere)) == (False, True)


def test_leaving_without_having_joined_changes_nothing() -> None:
    admin = make_admin()
    presence.leave(uuid4(), admin)
    presence.join(uuid4(), ProfileId(uuid4()))  # no such profile: nothing to mark
    assert not is_online(admin)
