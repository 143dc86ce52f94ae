"""Observability's settings: who may read /metrics, and which requests the access log keeps."""

from __future__ import annotations

from dataclasses import dataclass

from repo.config import check_one_of, variable

ACCESS_LOGS = ("all", "errors")


@dataclass(frozen=True, slots=True)
class ObservabilitySettings:
    metrics_token: str | None = variable("METRICS_TOKEN", None)
    metrics_unprotected: bool = variable("METRICS_UNPROTECTED", False)
    access_log: str = variable("ACCESS_LOG", "all")

    def validate(self) -> None:
        check_one_of("ACCESS_LOG", self.access_log, ACCESS_LOGS)
