"""Logs: one JSON object per line (python-json-logger), for `helpline serve` and its workers.

Request lines carry the request id, operation name, duration and error codes; never tokens,
variables or message contents.
"""

from __future__ import annotations

import logging
from typing import Any

access_log = logging.getLogger("helpline.access")

_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": _FORMAT,
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    },
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["stderr"], "level": "INFO"},
    "loggers": {
        "uvicorn": {"level": "INFO"},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"level": "WARNING"},  # Helpline logs its own request lines
        "peewee": {"level": "WARNING"},
    },
}


class RequestLog:
    """One line per GraphQL request, or, with ``successes=False`` (ACCESS_LOG=errors), one per
    request that failed: a JSON line costs about 15 % of a hot request's CPU (BENCHMARKS.md),
    which a deployment whose load balancer already logs every request need not pay."""

    def __init__(self, *, successes: bool = True) -> None:
        self.successes = successes

    def __call__(
        self, *, request_id: str, operation: str, seconds: float, status: int, codes: list[str]
    ) -> None:
        if status == 200 and not codes and not self.successes:
            return
        access_log.info(
            "graphql request",
            extra={
                "request_id": request_id,
                "operation": operation,
                "duration_ms": round(seconds * 1000, 2),
                "status": status,
                "error_codes": codes,
            },
        )
