"""Observability's settings: who may read /metrics, and which requests the access log keeps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from repo.config import check_one_of, read_bool

ACCESS_LOGS = ("all", "errors")


@dataclass(frozen=True, slots=True)
class ObservabilitySettings:
    metrics_token: str | None = None
    metrics_unprotected: bool = False
    access_log: str = "all"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ObservabilitySettings:
        return cls(
            metrics_token=env.get("METRICS_TOKEN") or None,
            metrics_unprotected=read_bool(env, "METRICS_UNPROTECTED"),
            access_log=env.get("ACCESS_LOG") or cls().access_log,
        )

    def validate(self) -> None:
        check_one_of("ACCESS_LOG", self.access_log, ACCESS_LOGS)
