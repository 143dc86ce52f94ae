"""Who is calling: Supabase-style JWTs, verified with PyJWT (HS256 secret or RS256/ES256 JWKS)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import jwt

from gql.auth.settings import AuthSettings
from gql.caching.lru import ByteLRU
from repo.ids import CustomerId

ANON = "anon"
AUTHENTICATED = "authenticated"
SERVICE_ROLE = "service_role"
HMAC_ALGORITHMS = ("HS256",)
ASYMMETRIC_ALGORITHMS = ("RS256", "ES256")
LEEWAY_SECONDS = 30
VERIFIED_TTL_S = 300.0  # how long a verified token is remembered, at most
# What a remembered token's caller holds beyond the email and name kept from it: the Caller,
# its dict, the user id, the tuple with its deadline (measured: 333 bytes on CPython 3.11).
# The token's text and the cache's entry are counted by the cache (gql/caching/lru.py).
VERIFIED_CALLER_BYTES = 352


class AuthenticationFailed(Exception):
    """The credentials are unusable; the message says why without echoing the token."""


@dataclass
class Caller:
    """The verified identity behind a request. ``is_admin`` is looked up once, when first needed."""

    role: str
    user_id: CustomerId | None = None
    email: str | None = None
    full_name: str | None = None
    expires_at: float | None = None  # the token's exp (seconds since the epoch)
    admin_lookup: Callable[[CustomerId], bool] | None = field(default=None, repr=False)
    _is_admin: bool | None = field(default=None, init=False, repr=False)

    @property
    def is_service(self) -> bool:
        return self.role == SERVICE_ROLE

    @property
    def is_admin(self) -> bool:
        if self.role != AUTHENTICATED or self.user_id is None or self.admin_lookup is None:
            return False
        if self._is_admin is None:
            self._is_admin = self.admin_lookup(self.user_id)
        return self._is_admin

    @property
    def known_admin(self) -> bool | None:
        """Whether an admin, if already known (never looked up here; None: not yet)."""
        return self._is_admin if self.role == AUTHENTICATED else False

    def learn_admin_status(self, is_admin: bool) -> None:
        """Record the admin flag of the caller's own profile, read along with other data."""
        if self.role == AUTHENTICATED:
            self._is_admin = is_admin

    def rechecked(self) -> Caller:
        """The same identity, its admin status looked up again when next needed."""
        return replace(self)


ANONYMOUS = Caller(role=ANON)


class Authenticator:
    """Verifies bearer tokens against the configured keys; the accepted algorithms are explicit."""

    def __init__(self, settings: AuthSettings, admin_lookup: Callable[[CustomerId], bool]) -> None:
        self._secret = settings.jwt_secret
        self._audience = settings.jwt_audience
        self._admin_lookup = admin_lookup
        self._jwks = _jwks_source(settings.jwt_jwks) if settings.jwt_jwks else None
        self._max_token_bytes = settings.max_token_bytes
        # thread-safe: worker threads authenticate concurrently
        self._verified: ByteLRU[str, tuple[Caller, float]] = ByteLRU(settings.token_cache_bytes)

    def authenticate(self, authorization: str | None) -> Caller:
        """The caller for an ``Authorization`` header value (None: anonymous).

        A token is ASCII (base64url and dots) of at most MAX_TOKEN_BYTES: anything else is
        refused before any of it is decoded or its signature checked.
        """
        if not authorization:
            return ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationFailed("malformed Authorization header: expected 'Bearer <token>'")
        if not token.isascii():  # over the socket a token may be any JSON string
            raise AuthenticationFailed("malformed token")
        if len(token) > self._max_token_bytes:
            raise AuthenticationFailed(
                f"token larger than MAX_TOKEN_BYTES ({self._max_token_bytes} bytes)"
            )
        return replace(self._verified_caller(token))  # a fresh Caller per request

    def _verified_caller(self, token: str) -> Caller:
        """The caller of a token, verified once and then remembered for a while.

        A widget sends the same token on every request, and verifying it (base64, JSON, an
        HMAC or a signature) is a large share of a hot request's CPU. The same bytes verify
        the same way, so a verified token is remembered until the earlier of its expiry
        (the clock-skew leeway included, as when verifying) and VERIFIED_TTL_S, which also
        bounds how long a key removed from the JWKS still admits the tokens it signed.
        The tokens remembered hold at most TOKEN_CACHE_BYTES (the token's text, the cache's
        entry and ``_caller_bytes``), the least recently used going first; a token heavier
        than a MAX_ENTRY_SHARE-th of it is not remembered, only verified on each request.
        """
        now = time.monotonic()
        hit = self._verified.get(token)
        if hit is not None:
            caller, fresh_until = hit
            if now < fresh_until and (caller.expires_at or 0) + LEEWAY_SECONDS > time.time():
                return caller
            self._verified.discard(token)
        caller = self._caller_of(self._verify(token))
        self._verified.put(token, (caller, now + VERIFIED_TTL_S), _caller_bytes(caller))
        return caller

    def _caller_of(self, claims: dict[str, Any]) -> Caller:
        role = claims["role"]
        if not isinstance(role, str):
            raise AuthenticationFailed("invalid token: claim 'role' must be a string")
        expires_at = float(claims["exp"])
        if role != AUTHENTICATED:
            return Caller(role=role, expires_at=expires_at)
        return Caller(
            role=role,
            expires_at=expires_at,
            user_id=_subject(claims),
            email=_string_claim(claims.get("email")),
            full_name=_string_claim(_metadata(claims).get("full_name")),
            admin_lookup=self._admin_lookup,
        )

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise AuthenticationFailed("malformed token") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str):
            raise AuthenticationFailed("malformed token: no algorithm")
        key = self._key_for(algorithm, header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "role"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed("token expired") from None
        except jwt.InvalidSignatureError:
            raise AuthenticationFailed("bad signature") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationFailed(f"missing required claim '{exc.claim}'") from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationFailed("token not valid yet") from None
        except jwt.InvalidTokenError:
            raise AuthenticationFailed("invalid token") from None
        if claims.get("role") == AUTHENTICATED:
            self._check_audience(claims)
        return claims

    def _key_for(self, algorithm: str, kid: object) -> Any:
        if algorithm in HMAC_ALGORITHMS:
            if self._secret is None:
                raise AuthenticationFailed("HS256 tokens are not accepted here")
            return self._secret
        if algorithm in ASYMMETRIC_ALGORITHMS:
            if self._jwks is None:
                raise AuthenticationFailed(f"{algorithm} tokens are not accepted here")
            if not isinstance(kid, str):
                raise AuthenticationFailed("token has no key id (kid)")
            try:
                signing_key = self._jwks(kid)
            except (jwt.PyJWKClientError, jwt.PyJWKSetError, KeyError):
                raise AuthenticationFailed("unknown signing key") from None
            if signing_key.algorithm_name != algorithm:
                raise AuthenticationFailed(f"key {kid[:32]!r} is not a {algorithm} key")
            return signing_key.key
        raise AuthenticationFailed(f"unsupported algorithm {algorithm[:16]!r}")

    def _check_audience(self, claims: dict[str, Any]) -> None:
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if audience is None:
            raise AuthenticationFailed("missing required claim 'aud'")
        if self._audience not in audiences:
            raise AuthenticationFailed("wrong audience")


def _caller_bytes(caller: Caller) -> int:
    """What a verified token's remembered caller holds: the email and name kept from its
    claims (Python's sizes: up to 4 bytes a character) and VERIFIED_CALLER_BYTES."""
    texts = (caller.email, caller.full_name)
    return sum(sys.getsizeof(t) for t in texts if t is not None) + VERIFIED_CALLER_BYTES


def _subject(claims: dict[str, Any]) -> CustomerId:
    sub = claims.get("sub")
    if sub is None:
        raise AuthenticationFailed("missing required claim 'sub'")
    try:
        return CustomerId(UUID(str(sub)))
    except ValueError:
        raise AuthenticationFailed("invalid token: claim 'sub' must be a UUID") from None


def _metadata(claims: dict[str, Any]) -> dict[str, Any]:
    metadata = claims.get("user_metadata")
    return metadata if isinstance(metadata, dict) else {}


def _string_claim(value: object) -> str | None:
    """A text claim, stripped; None when it is missing, blank, or not Unicode text (a lone
    surrogate, which a JSON escape can carry but no database stores)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value.strip()


def _jwks_source(location: str) -> Callable[[str], jwt.PyJWK]:
    """Signing keys by kid: an https JWKS URL fetched and cached by PyJWKClient, or a file."""
    if urlsplit(location).scheme == "https":
        client = jwt.PyJWKClient(location, cache_keys=True, timeout=5)
        return client.get_signing_key
    key_set = jwt.PyJWKSet.from_json(Path(location).read_text())
    return key_set.__getitem__
