"""The outbox relay: publishes committed outbox rows to Kafka and marks them sent.

Run one relay per database (`python -m services.shared.relay`). Delivery is at least once:
a crash between Kafka's acknowledgement and marking the row sent publishes it again, and
consumers deduplicate by event id. Per-key order holds because a key whose send failed is
not marked sent past the failure.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka.errors import KafkaError
from sqlalchemy import Engine, delete, select, update

from cofab.events.v1.envelope_pb2 import EventEnvelope
from services.shared.config import Settings, load_settings
from services.shared.db import make_engine, outbox, read_only, utcnow
from services.shared.events import kafka_headers
from services.shared.kafka import ensure_topics, make_producer
from services.shared.process import mark_ready, run_until_signalled

log = logging.getLogger(__name__)

# Sent rows are kept a while for inspection and replay, then deleted.
DEFAULT_RETENTION = dt.timedelta(days=7)
PRUNE_INTERVAL_S = 600.0


@dataclass(frozen=True)
class PendingEvent:
    seq: int
    topic: str
    key: str
    payload: bytes


class OutboxRelay:
    """Moves outbox rows to Kafka. `producer_factory` is retried while Kafka is unreachable."""

    def __init__(
        self,
        engine: Engine,
        producer_factory: Callable[[], Any],
        batch_size: int = 500,
        send_timeout: float = 15.0,
        retention: dt.timedelta = DEFAULT_RETENTION,
    ) -> None:
        self._engine = engine
        self._producer_factory = producer_factory
        self._producer: Any = None
        self._batch_size = batch_size
        self._send_timeout = send_timeout
        self._retention = retention

    def pending(self) -> list[PendingEvent]:
        # A short read: nothing is held open while Kafka is slow or down.
        with read_only(self._engine) as conn:
            rows = conn.execute(
                select(outbox.c.seq, outbox.c.topic, outbox.c.key, outbox.c.payload)
                .where(outbox.c.sent_time.is_(None))
                .order_by(outbox.c.seq)
                .limit(self._batch_size)
            ).all()
        return [PendingEvent(r.seq, r.topic, r.key, r.payload) for r in rows]

    def publish_once(self) -> int:
        """Publishes one batch; returns how many rows were acknowledged and marked sent."""
        batch = self.pending()
        if not batch:
            return 0
        producer = self._connected_producer()
        if producer is None:
            return 0
        futures = []
        for event in batch:
            envelope = EventEnvelope.FromString(event.payload)
            try:
                future = producer.send(
                    event.topic,
                    key=event.key.encode(),
                    value=event.payload,
                    headers=kafka_headers(envelope),
                )
            except KafkaError as exc:
                log.warning("send of outbox row %d failed: %s", event.seq, exc)
                future = None
            futures.append(future)
        producer.flush(timeout=self._send_timeout)
        sent: list[int] = []
        failed_keys: set[str] = set()
        for event, future in zip(batch, futures, strict=True):
            if event.key in failed_keys:
                continue
            try:
                if future is None:
                    raise KafkaError("not sent")
                future.get(timeout=self._send_timeout)
            except KafkaError as exc:
                log.warning("outbox row %d not acknowledged: %s", event.seq, exc)
                failed_keys.add(event.key)
                continue
            sent.append(event.seq)
        if failed_keys:
            self._drop_producer()
        if sent:
            with self._engine.begin() as conn:
                conn.execute(
                    update(outbox).where(outbox.c.seq.in_(sent)).values(sent_time=utcnow())
                )
        return len(sent)

    def prune(self, now: dt.datetime | None = None) -> int:
        """Deletes rows sent longer ago than the retention; returns how many."""
        cutoff = (now or utcnow()) - self._retention
        with self._engine.begin() as conn:
            result = conn.execute(
                delete(outbox).where(outbox.c.sent_time.is_not(None), outbox.c.sent_time < cutoff)
            )
        return result.rowcount

    def run(self, stop: threading.Event, idle_wait: float = 0.05, retry_wait: float = 2.0) -> None:
        """Publishes until `stop` is set; backs off while Kafka or the database is unavailable.

        An idle relay polls every `idle_wait` seconds: one indexed query, cheap enough to keep an
        event's wait in the outbox (e.g. an RFQ's fan-out to its suppliers) well under a second."""
        next_prune = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() >= next_prune:
                    self.prune()
                    next_prune = time.monotonic() + PRUNE_INTERVAL_S
                published = self.publish_once()
            except Exception:
                log.exception("relay pass failed; retrying")
                stop.wait(retry_wait)
                continue
            if published == 0:
                stop.wait(idle_wait if self._producer is not None else retry_wait)
        self.close()

    def close(self) -> None:
        self._drop_producer()

    def _connected_producer(self) -> Any:
        if self._producer is None:
            try:
                self._producer = self._producer_factory()
            except KafkaError as exc:
                log.warning("Kafka unavailable (%s); events wait in the outbox", exc)
                return None
        return self._producer

    def _drop_producer(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=1)
            except KafkaError:
                pass
            self._producer = None


def bootstrap(settings: Settings) -> OutboxRelay:
    """Composition root of the relay process."""
    engine = make_engine(settings.database_url)

    def producer_factory() -> Any:
        ensure_topics(settings.kafka_bootstrap)
        return make_producer(settings.kafka_bootstrap)

    return OutboxRelay(engine, producer_factory)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s relay %(levelname)s %(message)s")
    settings = load_settings()
    relay = bootstrap(settings)
    relay.pending()  # fails fast when the database is unreachable or not migrated
    mark_ready(settings)
    run_until_signalled(lambda stop: relay.run(stop))


if __name__ == "__main__":
    main()
