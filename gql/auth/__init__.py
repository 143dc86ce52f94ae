"""Authentication: bearer tokens verified (JWT, HS256 or a JWKS), the caller they name, and
the remembered verifications (tokens.py)."""
