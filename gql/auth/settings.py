"""Authentication's settings: the keys tokens are verified with, and what verifying may cost."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from repo.config import ConfigError, read_int
from repo.urls import splits, url_scheme

MIN_JWT_SECRET_LENGTH = 32


@dataclass(frozen=True, slots=True)
class AuthSettings:
    jwt_secret: str | None = None
    jwt_jwks: str | None = None
    jwt_audience: str = "authenticated"
    max_token_bytes: int = 16 * 1024
    token_cache_bytes: int = 16 * 1024 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AuthSettings:
        defaults = cls()
        return cls(
            jwt_secret=env.get("JWT_SECRET") or None,
            jwt_jwks=env.get("JWT_JWKS") or None,
            jwt_audience=env.get("JWT_AUDIENCE") or defaults.jwt_audience,
            max_token_bytes=read_int(
                env, "MAX_TOKEN_BYTES", defaults.max_token_bytes, minimum=1024
            ),
            token_cache_bytes=read_int(
                env, "TOKEN_CACHE_BYTES", defaults.token_cache_bytes, minimum=0
            ),
        )

    @property
    def has_key(self) -> bool:
        return bool(self.jwt_secret or self.jwt_jwks)

    def validate(self) -> None:
        if self.jwt_secret is not None and len(self.jwt_secret) < MIN_JWT_SECRET_LENGTH:
            raise ConfigError(
                f"JWT_SECRET: must be at least {MIN_JWT_SECRET_LENGTH} characters for HS256"
            )
        if self.jwt_jwks:
            _validate_jwks(self.jwt_jwks)


def _validate_jwks(location: str) -> None:
    """JWT_JWKS: an https URL (``urlsplit`` reads it) or a file; what is wrong with a URL said
    without quoting it (its userinfo may hold a password)."""
    scheme = url_scheme(location)
    if scheme == "http":
        raise ConfigError("JWT_JWKS: use https; keys fetched over http can be swapped in transit")
    if scheme == "https" and not splits(location):
        raise ConfigError("JWT_JWKS: the https URL cannot be read (an unbalanced '[' or ']'?)")
    if scheme != "https" and not Path(location).is_file():
        shown = "the URL" if scheme else repr(location)
        raise ConfigError(f"JWT_JWKS: {shown} is neither an https URL nor a file")
