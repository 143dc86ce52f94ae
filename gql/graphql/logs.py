"""Logs: one JSON object per line (python-json-logger), for `helpline serve` and its workers.

Request lines carry the request id, the operation's label (as in the metrics) and the client's
operation name, duration and error codes; never tokens, variables or message contents.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

access_log = logging.getLogger("helpline.access")
MAX_NAME_CHARS = 64  # a client's operation name, as logged

# The id of the request being served: set by the view, copied into its worker thread.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


class RequestIdFilter(logging.Filter):
    """Stamp every line logged while a request is served with its id, the repository's too,
    so an operator can follow one failed request from its access line to its cause."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id") and (request_id := request_id_var.get()):
            record.request_id = request_id
        return True


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
    "filters": {"request_id": {"()": "gql.graphql.logs.RequestIdFilter"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id"],
        }
    },
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
        self,
        *,
        request_id: str,
        operation: str,
        operation_name: object,
        seconds: float,
        status: int,
        codes: list[str],
    ) -> None:
        """``operation``: the metric label; ``operation_name``: whatever the client sent."""
        if status == 200 and not codes and not self.successes:
            return
        name = operation_name[:MAX_NAME_CHARS] if isinstance(operation_name, str) else None
        access_log.info(
            "graphql request",
            extra={
                "request_id": request_id,
                "operation": operation,
                "operation_name": name,
                "duration_ms": round(seconds * 1000, 2),
                "status": status,
                "error_codes": codes,
            },
        )
