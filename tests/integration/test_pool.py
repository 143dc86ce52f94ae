"""The PostgreSQL pool checks connections without a round trip and replaces dropped ones."""

from __future__ import annotations

import os

import psycopg2

from gql.http.settings import Settings
from repo.conversations import find_admin_conversation
from repo.database import close_database, open_database, pool_connections_idle
from tests.factories import first_contact, make_admin, make_user


def test_idle_connections_the_server_dropped_are_replaced_without_a_failed_request(
    postgres: Settings,
) -> None:
    make_admin()
    customer = make_user()
    first_contact(customer)
    pooled = pool_connections_idle()
    assert pooled >= 1
    conn = psycopg2.connect(postgres.database.database_url)
    conn.autocommit = True
    with conn, conn.cursor() as cursor:  # as a restart would: each backend gone, its socket closed
        cursor.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) "
            "FROM pg_stat_activity WHERE application_name = 'helpline' "
            "AND datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] >= pooled  # each waited for: it has exited

    assert find_admin_conversation(customer) is not None  # no failed request: it noticed
    assert pool_connections_idle() >= 1


def test_a_process_with_more_than_1024_open_files_still_checks_its_connections(
    postgres: Settings,
) -> None:
    make_admin()
    customer = make_user()
    close_database()
    spare = [os.dup(0) for _ in range(1100)]  # as a server holding many sockets
    try:
        open_database(postgres.database)  # its connections get descriptors above select()'s 1023
        first_contact(customer)  # opens one, returns it to the pool
        assert pool_connections_idle() >= 1

        assert find_admin_conversation(customer) is not None  # checked out again: polled
    finally:
        for fd in spare:
            os.close(fd)
