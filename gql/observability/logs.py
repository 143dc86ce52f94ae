"""Logs: one JSON object per line (python-json-logger), for `helpline serve` and its workers,
each line logged while a request is served stamped with its id (the access lines themselves:
gql/http/responses.py). Never tokens, variables or message contents."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

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
    "filters": {"request_id": {"()": "gql.observability.logs.RequestIdFilter"}},
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
