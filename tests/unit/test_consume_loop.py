"""ConsumeLoop against in-memory fakes of the Kafka consumer and producer."""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from cofab.design.v1 import events_pb2
from cofab.events.v1.envelope_pb2 import EventEnvelope
from services.shared.consumer import ConsumeLoop, PermanentEventError
from services.shared.events import make_envelope

TP = TopicPartition("cofab.design", 0)


@dataclass
class Record:
    offset: int
    value: bytes | None
    topic: str = "cofab.design"
    partition: int = 0
    key: bytes = b"k"
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class FakeConsumer:
    """Serves its records from the last committed or sought offset, like Kafka would."""

    def __init__(self, records: list[Record], stop: threading.Event, polls: int) -> None:
        self.records = records
        self.position = 0
        self.committed: list[int] = []
        self.stop = stop
        self.polls_left = polls

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[Record]]:
        self.polls_left -= 1
        if self.polls_left < 0:
            self.stop.set()
            return {}
        batch = [r for r in self.records if r.offset >= self.position]
        self.position = len(self.records)
        return {TP: batch} if batch else {}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position = offset

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.committed.append(offsets[TP].offset)


class Future:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def get(self, timeout: float) -> None:
        if self.error:
            raise self.error


class FakeProducer:
    def __init__(self, failures: int = 0) -> None:
        self.sent: list[tuple[str, bytes, dict[str, bytes]]] = []
        self.failures = failures

    def send(
        self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> Future:
        if self.failures:
            self.failures -= 1
            return Future(KafkaError("broker down"))
        self.sent.append((topic, value, dict(headers)))
        return Future(None)


def event() -> bytes:
    return make_envelope(
        source="s",
        event_type="design.design.created",
        subject="projects/p/designs/d",
        organization="organizations/o",
        data=events_pb2.DesignCreated(),
    ).SerializeToString()


def run(
    records: list[Record],
    handler: Callable[[EventEnvelope], None],
    producer: FakeProducer,
    polls: int = 5,
) -> FakeConsumer:
    stop = threading.Event()
    consumer = FakeConsumer(records, stop, polls)
    ConsumeLoop(consumer, producer, handler, "test", retry_wait=0).run(stop)
    return consumer


def test_handled_records_are_committed_in_order() -> None:
    seen: list[str] = []
    consumer = run(
        [Record(0, event()), Record(1, event())], lambda e: seen.append(e.id), FakeProducer()
    )
    assert len(seen) == 2
    assert consumer.committed == [1, 2]


def test_malformed_record_goes_to_dead_letter_and_does_not_block() -> None:
    seen: list[str] = []
    producer = FakeProducer()
    consumer = run(
        [Record(0, b"\xffgarbage"), Record(1, event())], lambda e: seen.append(e.id), producer
    )
    assert len(seen) == 1
    assert consumer.committed == [1, 2]
    topic, value, headers = producer.sent[0]
    assert topic == "cofab.deadletter" and value == b"\xffgarbage"
    assert headers["dlq_reason"].startswith(b"MalformedEvent")
    assert headers["dlq_offset"] == b"0"


def test_permanent_error_is_dead_lettered_with_reason() -> None:
    def handler(_e: EventEnvelope) -> None:
        raise PermanentEventError("unknown RFQ rfq-9")

    producer = FakeProducer()
    consumer = run([Record(0, event())], handler, producer)
    assert b"unknown RFQ rfq-9" in producer.sent[0][2]["dlq_reason"]
    assert consumer.committed == [1]


def test_transient_failure_retries_without_skipping() -> None:
    attempts: list[str] = []

    def flaky(e: EventEnvelope) -> None:
        attempts.append(e.id)
        if len(attempts) < 3:
            raise ConnectionError("temporal unavailable")

    consumer = run([Record(0, event()), Record(1, event())], flaky, FakeProducer(), polls=6)
    # The first record was retried until it succeeded, then the second was handled.
    assert attempts[0] == attempts[1] == attempts[2] != attempts[3]
    assert consumer.committed == [1, 2]


def test_dead_letter_outage_keeps_the_record() -> None:
    producer = FakeProducer(failures=1)
    consumer = run([Record(0, b"\xff")], lambda e: None, producer, polls=4)
    assert consumer.committed == [1]  # committed only after the second, successful DLQ write
    assert len(producer.sent) == 1
