"""`python -m gql.ops.tokens`: tokens the server accepts, and the development secret."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import jwt
import pytest

from gql.auth.settings import AuthSettings
from gql.auth.tokens import Authenticator
from gql.ops import tokens


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JWT_SECRET", raising=False)
    return tmp_path


def test_demo_creates_a_private_dev_secret_once_and_prints_a_token_per_role(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert tokens.main(["--demo"]) == 0
    secret_file = in_tmp / tokens.DEV_SECRET_FILE
    secret = secret_file.read_text().strip()
    assert len(secret) >= 32 and secret_file.stat().st_mode & 0o777 == 0o600
    out = capsys.readouterr().out
    for name in ["CUSTOMER_TOKEN", "LEGACY_TOKEN", "ADMIN_TOKEN", "SERVICE_TOKEN"]:
        assert f"export {name}=" in out
    assert "http://127.0.0.1:8000/demo/chat#token=ey" in out  # the demo pages, ready to open
    assert "http://127.0.0.1:8000/demo/inbox#token=ey" in out

    assert tokens.main(["--demo"]) == 0
    assert secret_file.read_text().strip() == secret


def test_a_minted_token_is_accepted_by_the_server(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s" * 40
    monkeypatch.setenv("JWT_SECRET", secret)
    sub = uuid4()

    assert tokens.main(["--role", "authenticated", "--sub", str(sub), "--email", "a@b.c"]) == 0

    token = capsys.readouterr().out.strip()
    caller = Authenticator(
        AuthSettings(jwt_secret=secret), admin_lookup=lambda _: False
    ).authenticate(f"Bearer {token}")
    assert (caller.role, caller.user_id, caller.email) == ("authenticated", sub, "a@b.c")
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_minting_without_a_secret_or_a_sub_is_refused(in_tmp: Path) -> None:
    with pytest.raises(SystemExit):
        tokens.main(["--role", "service_role"])
    (in_tmp / tokens.DEV_SECRET_FILE).write_text("d" * 40)
    with pytest.raises(SystemExit):
        tokens.main(["--role", "authenticated"])
