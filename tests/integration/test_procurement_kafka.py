"""The RFQ fan-out on a real Kafka broker: one record per invited supplier, keyed by the
supplier, so each supplier's records share one partition and stay in order."""

from __future__ import annotations

import time
import uuid

from kafka import KafkaConsumer

from cofab.procurement.v1 import procurement_pb2 as pb
from services.shared.events import decode_envelope, header
from services.shared.kafka import ensure_topics, make_producer
from services.shared.relay import OutboxRelay
from tests.integration.test_procurement_api import (
    Procurement,
    new_open_rfq,
    procurement,
    quote_message,
)

__all__ = ["procurement"]  # the fixture, imported to be used here


def records_about(bootstrap: str, rfq: str, expected: int, timeout: float = 30.0) -> list[object]:
    """Records of `cofab.procurement` whose subject is the RFQ or one of its quotes."""
    consumer = KafkaConsumer(
        "cofab.procurement",
        bootstrap_servers=bootstrap,
        group_id=f"test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=2000,
    )
    found: list[object] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(found) < expected:
            for record in consumer:
                if decode_envelope(record.value).subject.startswith(rfq):
                    found.append(record)
    finally:
        consumer.close()
    return found


def test_fan_out_reaches_kafka_keyed_by_supplier(
    procurement: Procurement, kafka_bootstrap: str
) -> None:
    p = procurement
    rfq = new_open_rfq(p)
    with p.client(p.stack.globex) as globex:
        globex.procurement.SubmitQuote(
            pb.SubmitQuoteRequest(parent=rfq.name, quote=quote_message(4.0, 3, 100))
        )

    def producer() -> object:
        ensure_topics(kafka_bootstrap)
        return make_producer(kafka_bootstrap)

    relay = OutboxRelay(p.stack.engine, producer)
    try:
        while relay.publish_once():
            pass
    finally:
        relay.close()
    # created, 2 x opened, quote.submitted, quote.received
    records = records_about(kafka_bootstrap, rfq.name, 5)
    by_type: dict[str, list[object]] = {}
    for record in records:
        by_type.setdefault(header(record.headers, "ce_type") or "", []).append(record)  # type: ignore[attr-defined]
    opened = by_type["procurement.rfq.opened"]
    assert sorted(r.key for r in opened) == [b"globex", b"initech"]  # type: ignore[attr-defined]
    for record in opened:
        envelope = decode_envelope(record.value)  # type: ignore[attr-defined]
        assert list(envelope.audience) == ["organizations/" + record.key.decode()]  # type: ignore[attr-defined]
    (submitted,) = by_type["procurement.quote.submitted"]
    globex_opened = next(r for r in opened if r.key == b"globex")  # type: ignore[attr-defined]
    # Same key, same partition: globex reads its invitation before its own quote's event.
    assert submitted.partition == globex_opened.partition  # type: ignore[attr-defined]
    assert submitted.offset > globex_opened.offset  # type: ignore[attr-defined]
