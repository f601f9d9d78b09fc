"""AIP-155 request ids: a retried mutating call with the same request_id has no second effect."""

from __future__ import annotations

import re

from sqlalchemy import Connection, insert, select

from services.shared.db import request_log, utcnow
from services.shared.errors import InvalidArgument
from services.shared.identity import Principal

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


def check_request_id(request_id: str) -> str:
    if request_id and not _REQUEST_ID_RE.match(request_id):
        raise InvalidArgument.field(
            "request_id", "must be 1-100 characters of letters, digits, '-', '_', '.', ':'"
        )
    return request_id


def replayed(conn: Connection, principal: Principal, method: str, request_id: str) -> str | None:
    """The resource name the first call with this request_id produced, if there was one."""
    if not check_request_id(request_id):
        return None
    row = conn.execute(
        select(request_log.c.resource).where(
            request_log.c.organization_id == principal.organization_id,
            request_log.c.user_id == principal.user_id,
            request_log.c.method == method,
            request_log.c.request_id == request_id,
        )
    ).first()
    return row.resource if row is not None else None


def remember(
    conn: Connection, principal: Principal, method: str, request_id: str, resource: str
) -> None:
    """Records the call's result in the same transaction as its effect."""
    if request_id:
        conn.execute(
            insert(request_log).values(
                organization_id=principal.organization_id,
                user_id=principal.user_id,
                method=method,
                request_id=request_id,
                resource=resource,
                create_time=utcnow(),
            )
        )
