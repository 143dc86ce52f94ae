"""Authentication's settings: the keys tokens are verified with, and what verifying may cost."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from repo.config import ConfigError, variable
from repo.urls import splits, url_scheme

MIN_JWT_SECRET_LENGTH = 32


@dataclass(frozen=True, slots=True)
class AuthSettings:
    jwt_secret: str | None = variable("JWT_SECRET", None)
    jwt_jwks: str | None = variable("JWT_JWKS", None)
    jwt_audience: str = variable("JWT_AUDIENCE", "authenticated")
    max_token_bytes: int = variable("MAX_TOKEN_BYTES", 16 * 1024, minimum=1024)
    token_cache_bytes: int = variable("TOKEN_CACHE_BYTES", 16 * 1024 * 1024, minimum=0)

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
