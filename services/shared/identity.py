"""Who is calling, and what their organization may do: principals, roles and API tokens.

Pure functions and values only; storage is in accounts.py.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from services.shared.errors import Unauthenticated

TOKEN_PREFIX = "cofab"
# cofab_<12 hex id>_<43 url-safe chars>: the id finds the row, only the secret's hash is stored.
_TOKEN_RE = re.compile(r"^cofab_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


class Role(enum.IntEnum):
    """A member organization's role in a project; a higher role includes every lower one."""

    VIEWER = 1
    REVIEWER = 2
    EDITOR = 3
    OWNER = 4


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: one user acting for one organization."""

    organization_id: str
    user_id: str
    organization_admin: bool = False
    service_account: bool = False
    user_display_name: str = ""
    organization_display_name: str = ""

    @property
    def organization_name(self) -> str:
        return f"organizations/{self.organization_id}"

    @property
    def user_name(self) -> str:
        return f"organizations/{self.organization_id}/users/{self.user_id}"


@dataclass(frozen=True)
class IssuedToken:
    """A freshly made token: `plaintext` is shown once; only `secret_hash` is ever stored."""

    token_id: str
    plaintext: str
    secret_hash: str


def issue_token() -> IssuedToken:
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return IssuedToken(token_id, f"{TOKEN_PREFIX}_{token_id}_{secret}", hash_secret(secret))


def hash_secret(secret: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough (no password stretching needed).
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(plaintext: str) -> tuple[str, str]:
    """Splits a token into (token id, secret hash); malformed tokens are Unauthenticated."""
    match = _TOKEN_RE.match(plaintext)
    if match is None:
        raise Unauthenticated("malformed API token")
    return match.group(1), hash_secret(match.group(2))


def secrets_match(stored_hash: str, presented_hash: str) -> bool:
    return hmac.compare_digest(stored_hash, presented_hash)


def parse_bearer(header: str | None) -> str:
    """Extracts the token from an `authorization: Bearer <token>` metadata value."""
    if not header:
        raise Unauthenticated(
            "missing authorization metadata: send 'authorization: Bearer <token>'"
        )
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
    return token.strip()
