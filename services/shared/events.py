"""Event envelopes (CloudEvents attributes around a protobuf payload) and their Kafka mapping."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from google.protobuf.any_pb2 import Any as AnyProto
from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp

from cofab.events.v1.envelope_pb2 import EventEnvelope
from services.shared.db import utcnow

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/protobuf"
# Events go to one topic per area, named by the first part of the event type:
# "design.design.created" -> "cofab.design". Keyed by aggregate id, so per-aggregate order holds.
TOPIC_PREFIX = "cofab."
DEAD_LETTER_TOPIC = "cofab.deadletter"
AREAS = ("identity", "design", "supply", "procurement")


# Every event type the platform emits. make_envelope refuses any other, so a new type is added
# here first; tests/integration/test_event_visibility.py then fails until it has a row saying what
# each organization in the new type's audience receives (ENGINEERING.md habit 16).
EVENT_TYPES = frozenset(
    {
        "identity.membership.invited",
        "identity.membership.accepted",
        "identity.membership.declined",
        "identity.membership.expired",
        "identity.membership.role_changed",
        "identity.membership.removed",
        "design.design.created",
        "design.design.updated",
        "design.revision.pushed",
        "design.revision.validated",
        "design.revision.released",
        "design.revision.diffed",
        "design.merged",
        "design.merge.conflicted",
        "design.comment.added",
        "design.review.requested",
        "design.review.decision_submitted",
        "design.review.extended",
        "design.review.cancel_requested",
        "design.review.reminder",
        "design.review.escalated",
        "design.review.restarted",
        "design.review.closed",
        "design.review.superseded",
        "supply.facility.created",
        "supply.capability.created",
        "supply.capability.deleted",
        "supply.item.created",
        "supply.item.updated",
        "supply.edge.created",
        "supply.edge.deleted",
        "supply.edge.proposed",
        "supply.edge.confirmed",
        "supply.edge.declined",
        "supply.edge.withdrawn",
        "supply.network.imported",
        "supply.disruption.reported",
        "supply.disruption.resolved",
        "supply.disruption.handled",
        "supply.impact.computed",
        "procurement.rfq.created",
        "procurement.rfq.published",
        "procurement.rfq.opened",
        "procurement.rfq.closed",
        "procurement.rfq.cancelled",
        "procurement.rfq.revised",
        "procurement.rfq.awarded",
        "procurement.award.proposed",
        "procurement.purchase_order.issued",
        "procurement.quote.submitted",
        "procurement.quote.updated",
        "procurement.quote.withdrawn",
        "procurement.quote.received",
    }
)
# Produced by partners' systems (not by the platform) and consumed by the bridge.
INBOUND_EVENT_TYPES = frozenset({"procurement.quote.inbound"})


class MalformedEvent(Exception):
    """A record that is not a cofab event envelope; it goes to the dead-letter topic."""


def topic_for(event_type: str) -> str:
    area = event_type.split(".", 1)[0]
    if area not in AREAS:
        raise ValueError(f"event type {event_type!r} names no known area {AREAS}")
    return TOPIC_PREFIX + area


def all_topics() -> list[str]:
    return [TOPIC_PREFIX + area for area in AREAS] + [DEAD_LETTER_TOPIC]


def make_envelope(
    *,
    source: str,
    event_type: str,
    subject: str,
    organization: str,
    data: Message,
    audience: Sequence[str] = (),
) -> EventEnvelope:
    """Builds an envelope with a fresh id and the current time; `event_type` must be one of
    EVENT_TYPES (or INBOUND_EVENT_TYPES, as a partner's systems produce them)."""
    if event_type not in EVENT_TYPES and event_type not in INBOUND_EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}: add it to EVENT_TYPES")
    payload = AnyProto()
    payload.Pack(data)
    time = Timestamp()
    time.FromDatetime(utcnow())
    return EventEnvelope(
        id=str(uuid.uuid4()),
        source=source,
        type=event_type,
        subject=subject,
        time=time,
        organization=organization,
        spec_version=SPEC_VERSION,
        audience=list(audience),
        data=payload,
    )


def kafka_headers(envelope: EventEnvelope) -> list[tuple[str, bytes]]:
    """CloudEvents Kafka binding attributes, so consumers can route without decoding the value."""
    return [
        ("ce_specversion", envelope.spec_version.encode()),
        ("ce_id", envelope.id.encode()),
        ("ce_source", envelope.source.encode()),
        ("ce_type", envelope.type.encode()),
        ("ce_subject", envelope.subject.encode()),
        ("ce_time", envelope.time.ToJsonString().encode()),
        ("ce_organization", envelope.organization.encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]


def decode_envelope(value: bytes | None) -> EventEnvelope:
    """Parses a Kafka record value; anything that is not a complete envelope is MalformedEvent."""
    if not value:
        raise MalformedEvent("empty record value")
    envelope = EventEnvelope()
    try:
        envelope.ParseFromString(value)
    except DecodeError as exc:
        raise MalformedEvent(f"not a protobuf EventEnvelope: {exc}") from None
    missing = [name for name in ("id", "type", "source", "subject") if not getattr(envelope, name)]
    if missing or not envelope.HasField("data"):
        raise MalformedEvent(f"envelope lacks {', '.join(missing) or 'data'}")
    return envelope


def unpack(envelope: EventEnvelope, message_type: type[Message]) -> Message:
    """Unpacks the payload as `message_type`, or MalformedEvent when it is something else."""
    message = message_type()
    if not envelope.data.Unpack(message):
        raise MalformedEvent(
            f"{envelope.type} carries {envelope.data.TypeName()}, "
            f"expected {message_type.DESCRIPTOR.full_name}"
        )
    return message


def header(headers: Iterable[tuple[str, bytes]], name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode(errors="replace")
    return None
