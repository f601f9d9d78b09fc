"""AIP-155 request ids: a retried mutating call with the same request_id has no second effect.

The first call's record keeps a fingerprint of its request (SHA-256 of the deterministic
serialization without request_id, taken by the server for every RPC). A later call with the same
request_id but another request is refused: INVALID_ARGUMENT with ErrorInfo reason
REQUEST_ID_REUSED. Not ALREADY_EXISTS or ABORTED, since nothing about the system's state would
make that request succeed on a retry: the request itself is wrong (its id belongs to another
request), and the client must send it with a fresh id.
"""

from __future__ import annotations

import contextvars
import hashlib
import re

from google.protobuf.message import Message
from sqlalchemy import Connection, insert, select

from services.shared.db import request_log, utcnow
from services.shared.errors import InvalidArgument
from services.shared.identity import Principal

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
REQUEST_ID_REUSED = "REQUEST_ID_REUSED"

_fingerprint: contextvars.ContextVar[str] = contextvars.ContextVar(
    "cofab_request_fingerprint", default=""
)


def fingerprint(request: Message) -> str:
    """SHA-256 of `request` as sent, request_id left out (a retry resends the same bytes)."""
    if any(field.name == "request_id" for field, _ in request.ListFields()):
        request = type(request).FromString(request.SerializeToString())
        request.ClearField("request_id")
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


def set_fingerprint(request: Message) -> None:
    """Marks `request` as the one this call's request_id stands for (set by the server for
    unary requests; a client-streaming RPC sets it from its header message)."""
    _fingerprint.set(fingerprint(request))


def check_request_id(request_id: str) -> str:
    if request_id and not _REQUEST_ID_RE.match(request_id):
        raise InvalidArgument.field(
            "request_id", "must be 1-100 characters of letters, digits, '-', '_', '.', ':'"
        )
    return request_id


def _reused(method: str) -> InvalidArgument:
    error = InvalidArgument.field(
        "request_id",
        f"was already used for a different {method} request; send a new request_id",
    )
    error.reason = REQUEST_ID_REUSED
    return error


def replayed(conn: Connection, principal: Principal, method: str, request_id: str) -> str | None:
    """The resource name the first call with this request_id produced, if there was one.
    InvalidArgument (REQUEST_ID_REUSED) when that first call was a different request."""
    if not check_request_id(request_id):
        return None
    row = conn.execute(
        select(request_log.c.resource, request_log.c.fingerprint).where(
            request_log.c.organization_id == principal.organization_id,
            request_log.c.user_id == principal.user_id,
            request_log.c.method == method,
            request_log.c.request_id == request_id,
        )
    ).first()
    if row is None:
        return None
    current = _fingerprint.get()
    if row.fingerprint and current and row.fingerprint != current:
        raise _reused(method)
    resource: str = row.resource
    return resource


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
                fingerprint=_fingerprint.get() or None,
            )
        )
