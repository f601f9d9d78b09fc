"""Consuming cofab events: at-least-once delivery made effectively-once.

`ProcessedEvents` records handled event ids in the consumer's database transaction, so a
redelivered event has no second effect. `ConsumeLoop` commits a Kafka offset only after its
record was handled, sends records that can never be handled to the dead-letter topic with the
reason (they never block a partition), and retries transient failures without skipping.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition
from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError

from cofab.events.v1.envelope_pb2 import EventEnvelope
from services.shared.db import processed_events, read_only, utcnow
from services.shared.events import DEAD_LETTER_TOPIC, MalformedEvent, decode_envelope

log = logging.getLogger(__name__)


class PermanentEventError(Exception):
    """The event is well-formed but can never be handled (e.g. it names an unknown RFQ)."""


class ProcessedEvents:
    """The set of event ids one consumer has handled, kept in the database."""

    def __init__(self, engine: Engine, consumer: str) -> None:
        self._engine = engine
        self._consumer = consumer

    def handle_once(self, event_id: str, effect: Callable[[Connection], None]) -> bool:
        """Runs `effect` and records `event_id` in one transaction, unless it was handled before.

        Returns False for a duplicate (nothing done)."""
        try:
            with self._engine.begin() as conn:
                if self._seen(conn, event_id):
                    return False
                conn.execute(
                    insert(processed_events).values(
                        consumer=self._consumer, event_id=event_id, process_time=utcnow()
                    )
                )
                effect(conn)
        except IntegrityError:
            # A concurrent delivery of the same event recorded it first; its effect stands.
            return False
        return True

    def seen(self, event_id: str) -> bool:
        with read_only(self._engine) as conn:
            return self._seen(conn, event_id)

    def record(self, event_id: str) -> None:
        """Marks an event handled whose effect lives outside this database (idempotent)."""
        self.handle_once(event_id, lambda _conn: None)

    def _seen(self, conn: Connection, event_id: str) -> bool:
        row = conn.execute(
            select(processed_events.c.event_id).where(
                processed_events.c.consumer == self._consumer,
                processed_events.c.event_id == event_id,
            )
        ).first()
        return row is not None


Handler = Callable[[EventEnvelope], None]


class ConsumeLoop:
    """Polls a Kafka consumer and hands each decoded envelope to `handler`."""

    def __init__(
        self,
        consumer: Any,
        dead_letter_producer: Any,
        handler: Handler,
        name: str,
        retry_wait: float = 1.0,
    ) -> None:
        self._consumer = consumer
        self._dlq = dead_letter_producer
        self._handler = handler
        self._name = name
        self._retry_wait = retry_wait

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            batches = self._consumer.poll(timeout_ms=500)
            for tp, records in batches.items():
                if not self._handle_partition(tp, records) and stop.wait(self._retry_wait):
                    return

    def _handle_partition(self, tp: TopicPartition, records: list[Any]) -> bool:
        """Handles records in order; on a transient failure rewinds to it and returns False."""
        for record in records:
            try:
                envelope = decode_envelope(record.value)
                self._handler(envelope)
            except (MalformedEvent, PermanentEventError) as exc:
                if not self._dead_letter(record, f"{type(exc).__name__}: {exc}"):
                    self._consumer.seek(tp, record.offset)
                    return False
            except Exception as exc:
                log.warning(
                    "%s: %s@%d offset %d failed, will retry: %s",
                    self._name,
                    tp.topic,
                    tp.partition,
                    record.offset,
                    exc,
                )
                self._consumer.seek(tp, record.offset)
                return False
            self._consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})
        return True

    def _dead_letter(self, record: Any, reason: str) -> bool:
        log.error(
            "%s: dead-lettering %s@%d offset %d: %s",
            self._name,
            record.topic,
            record.partition,
            record.offset,
            reason,
        )
        headers = list(record.headers or []) + [
            ("dlq_reason", reason.encode()),
            ("dlq_consumer", self._name.encode()),
            ("dlq_topic", record.topic.encode()),
            ("dlq_partition", str(record.partition).encode()),
            ("dlq_offset", str(record.offset).encode()),
        ]
        # Commit past the record only once the dead letter is durable: nothing is dropped.
        try:
            self._dlq.send(
                DEAD_LETTER_TOPIC, key=record.key, value=record.value or b"", headers=headers
            ).get(timeout=15)
        except KafkaError as exc:
            log.warning("%s: dead-letter topic unavailable, will retry: %s", self._name, exc)
            return False
        return True
