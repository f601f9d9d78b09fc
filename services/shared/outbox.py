"""The transactional outbox: events are rows written in the same transaction as the change."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, insert

from cofab.events.v1.envelope_pb2 import EventEnvelope
from services.shared.db import outbox, utcnow
from services.shared.events import topic_for


def enqueue(conn: Connection, envelope: EventEnvelope, key: str) -> None:
    """Adds an event to the outbox in the caller's transaction; the relay publishes it later.

    `key` is the aggregate id: Kafka keeps the events of one key in order."""
    conn.execute(
        insert(outbox).values(
            event_id=envelope.id,
            topic=topic_for(envelope.type),
            key=key,
            event_type=envelope.type,
            payload=envelope.SerializeToString(),
            create_time=utcnow(),
        )
    )


def enqueue_many(conn: Connection, events: Sequence[tuple[EventEnvelope, str]]) -> None:
    """Adds many (envelope, key) events in one statement: a fan-out of thousands of events
    (one per recipient) costs one round trip instead of one per row."""
    if not events:
        return
    now = utcnow()
    conn.execute(
        insert(outbox),
        [
            {
                "event_id": envelope.id,
                "topic": topic_for(envelope.type),
                "key": key,
                "event_type": envelope.type,
                "payload": envelope.SerializeToString(),
                "create_time": now,
            }
            for envelope, key in events
        ],
    )
