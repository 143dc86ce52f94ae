"""One process serves a SQLite file: a lock that a second one cannot take."""

from __future__ import annotations

import fcntl
import functools
import os
from collections.abc import Callable

from repo.config import ConfigError, DatabaseSettings
from repo.database import sqlite_path


def claim_sqlite_server(settings: DatabaseSettings) -> Callable[[], None]:
    """Take a lock no second process serving the same SQLite file can take; returns release.

    Live messages on SQLite are fanned out inside one process, so a second worker (say,
    plain ``uvicorn --workers 2``) would never hear the first one's messages. The lock is a
    flock on a file next to the database, independent of SQLite's own (fcntl) locks. The
    kernel drops it when the process dies, so a crash leaves nothing to clean up.
    """
    path = sqlite_path(settings.database_url)
    if not settings.is_sqlite or path == ":memory:":
        return lambda: None
    real = os.path.realpath(path)  # a symlink to the same file takes the same lock
    fd = os.open(f"{real}-serving.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(
            f"WEB_CONCURRENCY: another process already serves {settings.database_url}; "
            "SQLite serves one process (use PostgreSQL for more workers)"
        ) from None
    return functools.partial(os.close, fd)  # closing the file releases the lock
