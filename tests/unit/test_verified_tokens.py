"""Verified tokens are remembered, but never past their expiry, and callers stay separate."""

from __future__ import annotations

import time
from uuid import uuid4

import pytest

from gql.auth.settings import AuthSettings
from gql.auth.tokens import AUTHENTICATED, LEEWAY_SECONDS, AuthenticationFailed, Authenticator
from gql.ops.tokens import mint

SECRET = "unit-secret-" + "x" * 40


def authenticator(lookups: list[object]) -> Authenticator:
    def is_admin(user_id: object) -> bool:
        lookups.append(user_id)
        return False

    return Authenticator(AuthSettings(jwt_secret=SECRET), admin_lookup=is_admin)


def test_a_remembered_token_still_expires_on_time() -> None:
    auth = authenticator([])
    # valid now only thanks to the clock-skew leeway, and for one more second
    token = mint(SECRET, role=AUTHENTICATED, sub=uuid4(), expires_in=1 - LEEWAY_SECONDS)

    assert auth.authenticate(f"Bearer {token}").role == AUTHENTICATED
    time.sleep(1.5)

    with pytest.raises(AuthenticationFailed, match="token expired"):
        auth.authenticate(f"Bearer {token}")


def test_each_request_gets_its_own_caller() -> None:
    lookups: list[object] = []
    auth = authenticator(lookups)
    token = f"Bearer {mint(SECRET, role=AUTHENTICATED, sub=uuid4())}"

    first, second = auth.authenticate(token), auth.authenticate(token)
    assert first is not second
    assert not first.is_admin and not second.is_admin

    assert len(lookups) == 2  # one request's admin answer is never another's


def test_a_changed_token_is_verified_again() -> None:
    auth = authenticator([])
    token = mint(SECRET, role=AUTHENTICATED, sub=uuid4())
    auth.authenticate(f"Bearer {token}")
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"

    with pytest.raises(AuthenticationFailed):
        auth.authenticate(f"Bearer {forged}")
