"""Organizations, users and API tokens in the database: admin operations and authentication."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from services.shared import audit
from services.shared.db import api_tokens, organizations, users, utcnow
from services.shared.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    Unauthenticated,
)
from services.shared.identity import Principal, issue_token, parse_token, secrets_match

# Resource ids follow AIP-122: lower-case letters, digits and hyphens, starting with a letter.
_ID_RE = re.compile(r"^[a-z][a-z0-9-]{0,61}[a-z0-9]$")
MAX_TOKEN_TTL = dt.timedelta(days=365)
PLATFORM_ORGANIZATION = "cofab-platform"
SERVICE_ACCOUNT = "workflow-worker"
# Admin commands run outside any organization; the audit log records them under this principal.
ADMIN_PRINCIPAL = Principal("-", "admin-cli")


def check_id(kind: str, value: str) -> str:
    if not _ID_RE.match(value):
        raise InvalidArgument.field(
            kind,
            f"{value!r} must be 2-63 lower-case letters, digits or '-', starting with a letter",
        )
    return value


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    plaintext: str
    expire_time: dt.datetime


def create_organization(engine: Engine, org_id: str, display_name: str) -> None:
    check_id("organization", org_id)
    with engine.begin() as conn:
        try:
            conn.execute(
                insert(organizations).values(
                    id=org_id, display_name=display_name or org_id, create_time=utcnow()
                )
            )
        except IntegrityError:
            raise AlreadyExists(f"organization {org_id!r} already exists") from None
        audit.record(conn, ADMIN_PRINCIPAL, "organization.create", f"organizations/{org_id}")


def create_user(
    engine: Engine,
    org_id: str,
    user_id: str,
    display_name: str = "",
    organization_admin: bool = False,
    service_account: bool = False,
) -> None:
    check_id("user", user_id)
    with engine.begin() as conn:
        if (
            conn.execute(select(organizations.c.id).where(organizations.c.id == org_id)).first()
            is None
        ):
            raise NotFound(f"organization {org_id!r} does not exist")
        try:
            conn.execute(
                insert(users).values(
                    organization_id=org_id,
                    id=user_id,
                    display_name=display_name or user_id,
                    organization_admin=organization_admin,
                    service_account=service_account,
                    create_time=utcnow(),
                )
            )
        except IntegrityError:
            raise AlreadyExists(f"user {user_id!r} already exists in {org_id!r}") from None
        audit.record(
            conn,
            ADMIN_PRINCIPAL,
            "user.create",
            f"organizations/{org_id}/users/{user_id}",
            {"organization_admin": organization_admin, "service_account": service_account},
        )


def create_token(
    engine: Engine,
    org_id: str,
    user_id: str,
    ttl: dt.timedelta = dt.timedelta(days=90),
    description: str = "",
) -> TokenInfo:
    """Issues a token for a user. The plaintext is returned once and never stored."""
    if not dt.timedelta(0) < ttl <= MAX_TOKEN_TTL:
        raise InvalidArgument.field("ttl", "must be more than 0 and at most 365 days")
    issued = issue_token()
    now = utcnow()
    with engine.begin() as conn:
        user_exists = conn.execute(
            select(users.c.id).where(users.c.organization_id == org_id, users.c.id == user_id)
        ).first()
        if user_exists is None:
            raise NotFound(f"user {user_id!r} does not exist in organization {org_id!r}")
        conn.execute(
            insert(api_tokens).values(
                id=issued.token_id,
                organization_id=org_id,
                user_id=user_id,
                secret_sha256=issued.secret_hash,
                create_time=now,
                expire_time=now + ttl,
                description=description,
            )
        )
        audit.record(
            conn,
            ADMIN_PRINCIPAL,
            "token.create",
            f"organizations/{org_id}/users/{user_id}",
            {"token_id": issued.token_id},
        )
    return TokenInfo(issued.token_id, issued.plaintext, now + ttl)


def revoke_token(engine: Engine, token_id: str) -> None:
    with engine.begin() as conn:
        result = conn.execute(
            update(api_tokens)
            .where(api_tokens.c.id == token_id, api_tokens.c.revoke_time.is_(None))
            .values(revoke_time=utcnow())
        )
        if result.rowcount == 0:
            raise NotFound(f"no active token with id {token_id!r}")
        audit.record(conn, ADMIN_PRINCIPAL, "token.revoke", f"tokens/{token_id}")


# Built once: this runs for every authenticated call that misses the token cache.
_TOKEN_LOOKUP = (
    select(
        api_tokens.c.secret_sha256,
        api_tokens.c.expire_time,
        api_tokens.c.revoke_time,
        users.c.organization_id,
        users.c.id,
        users.c.display_name,
        users.c.organization_admin,
        users.c.service_account,
        organizations.c.display_name.label("organization_display_name"),
    )
    .join(
        users,
        (users.c.organization_id == api_tokens.c.organization_id)
        & (users.c.id == api_tokens.c.user_id),
    )
    .join(organizations, organizations.c.id == users.c.organization_id)
    .where(api_tokens.c.id == bindparam("token_id"))
)


@dataclass(frozen=True)
class Authenticated:
    principal: Principal
    token_expire_time: dt.datetime


def authenticate_token(
    conn: Connection, token: str, now: dt.datetime | None = None
) -> Authenticated:
    """Maps a presented token to its principal; every failure is the same Unauthenticated kind,
    with a message that tells the holder what to fix but never whether another token exists."""
    token_id, secret_hash = parse_token(token)
    row = conn.execute(_TOKEN_LOOKUP, {"token_id": token_id}).first()
    if row is None or not secrets_match(row.secret_sha256, secret_hash):
        raise Unauthenticated("unknown API token")
    if row.revoke_time is not None:
        raise Unauthenticated("API token was revoked")
    if row.expire_time <= (now or utcnow()):
        raise Unauthenticated("API token expired")
    principal = Principal(
        organization_id=row.organization_id,
        user_id=row.id,
        organization_admin=row.organization_admin,
        service_account=row.service_account,
        user_display_name=row.display_name,
        organization_display_name=row.organization_display_name,
    )
    return Authenticated(principal, row.expire_time)


def authenticate(conn: Connection, token: str, now: dt.datetime | None = None) -> Principal:
    """The principal behind a token (see authenticate_token)."""
    return authenticate_token(conn, token, now).principal


def ensure_service_account(engine: Engine, existing_token: str | None) -> str | None:
    """Makes sure the platform organization and its workflow service account exist.

    Returns a new token when `existing_token` is missing or no longer valid, else None."""
    with engine.begin() as conn:
        if existing_token:
            try:
                principal = authenticate(conn, existing_token)
            except Unauthenticated:
                principal = None
            if principal is not None and principal.service_account:
                return None
        has_org = conn.execute(
            select(organizations.c.id).where(organizations.c.id == PLATFORM_ORGANIZATION)
        ).first()
        has_user = conn.execute(
            select(users.c.id).where(
                users.c.organization_id == PLATFORM_ORGANIZATION, users.c.id == SERVICE_ACCOUNT
            )
        ).first()
    if has_org is None:
        create_organization(engine, PLATFORM_ORGANIZATION, "cofab platform")
    if has_user is None:
        create_user(
            engine, PLATFORM_ORGANIZATION, SERVICE_ACCOUNT, "workflow worker", service_account=True
        )
    info = create_token(
        engine, PLATFORM_ORGANIZATION, SERVICE_ACCOUNT, MAX_TOKEN_TTL, "workflow worker"
    )
    return info.plaintext
