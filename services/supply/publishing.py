"""Steps every supply use case shares: who may act, and the event in the outbox."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.message import Message
from sqlalchemy import Connection

from services.shared import authz, outbox
from services.shared.events import make_envelope
from services.shared.identity import Principal

SOURCE = "//cofab/supply"


def own(principal: Principal, organization_id: str, what: str) -> None:
    """Network data of an organization is its own: anyone else reads NotFound for `what`."""
    authz.require_own_organization(principal, organization_id, what)


def emit(
    conn: Connection,
    principal: Principal,
    event_type: str,
    subject: str,
    data: Message,
    key: str,
    audience: Sequence[str] = (),
) -> None:
    """Enqueues an event in the caller's transaction; `audience` lists organization ids allowed
    to see it (services/shared/events.py)."""
    envelope = make_envelope(
        source=SOURCE,
        event_type=event_type,
        subject=subject,
        organization=principal.organization_name,
        data=data,
        audience=[f"organizations/{o}" for o in dict.fromkeys(audience)],
    )
    outbox.enqueue(conn, envelope, key=key)
