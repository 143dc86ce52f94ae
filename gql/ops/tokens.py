"""Mint Supabase-style tokens for local use and tests.

    python -m gql.ops.tokens --role authenticated --sub <uuid> [--email a@b.c] [--expires-in 3600]
    python -m gql.ops.tokens --role service_role
    python -m gql.ops.tokens --demo [--url http://127.0.0.1:8000/graphql]

The secret is JWT_SECRET, or in development the git-ignored DEV_SECRET_FILE, which --demo
creates on first use so `make run` works out of the box.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import jwt

from gql.auth.tokens import AUTHENTICATED, SERVICE_ROLE
from repo.demo import ADMIN, CUSTOMER, LEGACY_CUSTOMER, DemoUser

DEV_SECRET_FILE = Path(".helpline-dev-secret")
DEFAULT_LIFETIME_S = 3600
DEMO_LIFETIME_S = 7 * 24 * 3600


def mint(
    secret: str,
    *,
    role: str,
    sub: UUID | None = None,
    email: str | None = None,
    full_name: str | None = None,
    audience: str = AUTHENTICATED,
    expires_in: int = DEFAULT_LIFETIME_S,
) -> str:
    """An HS256 token shaped like Supabase's (sub, email and aud only for signed-in users)."""
    now = int(time.time())
    claims: dict[str, Any] = {"role": role, "iat": now, "exp": now + expires_in, "iss": "helpline"}
    if sub is not None:
        claims |= {"sub": str(sub), "aud": audience}
    if email is not None:
        claims["email"] = email
    if full_name is not None:
        claims["user_metadata"] = {"full_name": full_name}
    return jwt.encode(claims, secret, algorithm="HS256")


def dev_secret(*, create: bool) -> str | None:
    """JWT_SECRET, else the development secret file (made on demand)."""
    if secret := os.environ.get("JWT_SECRET"):
        return secret
    if DEV_SECRET_FILE.exists():
        return DEV_SECRET_FILE.read_text().strip()
    if not create:
        return None
    secret = secrets.token_urlsafe(48)
    DEV_SECRET_FILE.write_text(secret + "\n")
    DEV_SECRET_FILE.chmod(0o600)
    return secret


def demo_tokens(secret: str) -> dict[str, str]:
    def user_token(user: DemoUser) -> str:
        return mint(
            secret, role=AUTHENTICATED, sub=user.id, email=user.email, expires_in=DEMO_LIFETIME_S
        )

    return {
        "CUSTOMER_TOKEN": user_token(CUSTOMER),
        "LEGACY_TOKEN": user_token(LEGACY_CUSTOMER),
        "ADMIN_TOKEN": user_token(ADMIN),
        "SERVICE_TOKEN": mint(secret, role=SERVICE_ROLE, expires_in=DEMO_LIFETIME_S),
    }


def demo_text(secret: str, url: str) -> str:
    tokens = demo_tokens(secret)
    post = f"curl -s {url} -H 'content-type: application/json'"
    open_own = (
        '{"query": "mutation { adminConversation { created profileCreated '
        'conversation { id admin { name } messages { edges { node { content } } } } } }"}'
    )
    integrity = '{"query": "{ integrity { orphanedConversationCount profileCoverage { profileCoveragePercent } } }"}'  # noqa: E501
    base = url.removesuffix("/graphql")
    return "\n".join(
        [
            "The demo pages (development only; the token travels in the URL fragment):",
            f"  customer's chat widget: {base}/demo/chat#token={tokens['CUSTOMER_TOKEN']}",
            f"  admin's console:        {base}/demo/inbox#token={tokens['ADMIN_TOKEN']}",
            f'GraphiQL playground: {url}  (paste a token as {{"Authorization": "Bearer ..."}})',
            "Demo tokens (valid 7 days; paste into a shell):",
            *(f"  export {name}={token}" for name, token in tokens.items()),
            "The customer opens their chat (the legacy customer's call also creates the profile):",
            f"  {post} -H \"Authorization: Bearer $CUSTOMER_TOKEN\" -d '{open_own}'",
            f"  {post} -H \"Authorization: Bearer $LEGACY_TOKEN\" -d '{open_own}'",
            "An admin or operator reads the integrity figures:",
            f"  {post} -H \"Authorization: Bearer $ADMIN_TOKEN\" -d '{integrity}'",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gql.ops.tokens",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--demo", action="store_true", help="print tokens for the demo users")
    parser.add_argument("--url", default="http://127.0.0.1:8000/graphql")
    parser.add_argument("--role", choices=[AUTHENTICATED, SERVICE_ROLE, "anon"])
    parser.add_argument("--sub", type=UUID, help="the user id (required for authenticated)")
    parser.add_argument("--email")
    parser.add_argument("--full-name")
    parser.add_argument("--expires-in", type=int, default=DEFAULT_LIFETIME_S, metavar="SECONDS")
    args = parser.parse_args(argv)

    secret = dev_secret(create=args.demo)
    if secret is None:
        parser.error(f"no secret: set JWT_SECRET or run with --demo to create {DEV_SECRET_FILE}")
    if args.demo:
        print(demo_text(secret, args.url))
        return 0
    if args.role is None:
        parser.error("--role is required (or --demo)")
    if args.role == AUTHENTICATED and args.sub is None:
        parser.error("--sub is required for --role authenticated")
    print(
        mint(
            secret,
            role=args.role,
            sub=args.sub,
            email=args.email,
            full_name=args.full_name,
            expires_in=args.expires_in,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
