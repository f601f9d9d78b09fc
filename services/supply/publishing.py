"""Steps every supply use case shares: who may act, and the event in the outbox."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from google.protobuf.message import Message
from sqlalchemy import Connection

from cofab.events.v1.envelope_pb2 import EventEnvelope
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
    outbox.enqueue(conn, envelope(principal, event_type, subject, data, audience), key=key)


def envelope(
    principal: Principal,
    event_type: str,
    subject: str,
    data: Message,
    audience: Sequence[str] = (),
) -> EventEnvelope:
    """The envelope `emit` enqueues, for callers that enqueue many at once."""
    return make_envelope(
        source=SOURCE,
        event_type=event_type,
        subject=subject,
        organization=principal.organization_name,
        data=data,
        audience=[f"organizations/{o}" for o in dict.fromkeys(audience)],
    )


def emit_views(
    conn: Connection,
    principal: Principal,
    event_type: str,
    subject: str,
    key: str,
    audience: Sequence[str],
    view: Callable[[str], Message],
) -> None:
    """One event per organization of `audience`, each with only that organization as its
    audience and `view(organization)` as its payload: where organizations may see different
    parts of one change, each gets its own view, decided by the same function as the RPCs'."""
    outbox.enqueue_many(
        conn,
        [
            (envelope(principal, event_type, subject, view(o), [o]), key)
            for o in dict.fromkeys(audience)
        ],
    )
